"""Retries: 429/503 honour Retry-After, connection errors are retried only when safe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from embedtune_client import Client, ConnectionFailed, RateLimitedError, RetryPolicy
from embedtune_client.retry import retry_after_seconds


def _client(handler, sleeps: list[float], attempts: int = 5) -> Client:  # type: ignore[no-untyped-def]
    return Client(
        url="http://api",
        api_key="k",
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(attempts=attempts),
        sleep=sleeps.append,
    )


def _limited(status: int, retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after else {}
    body = {"error": {"code": "too_many_active_jobs", "message": "wait", "details": {"max": 1}}}
    return httpx.Response(status, json=body, headers=headers)


def test_429_and_503_are_retried_after_retry_after_or_backoff() -> None:
    answers = [_limited(429, "7"), _limited(503), httpx.Response(200, json={"data": []})]
    sleeps: list[float] = []
    api = _client(lambda request: answers.pop(0), sleeps)
    assert api.datasets.list() == []
    assert sleeps == [7.0, 1.0]  # Retry-After, then the second backoff step (0.5 * 2)


def test_retry_after_is_capped_and_dates_are_read() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    seconds = retry_after_seconds(httpx.Response(429, headers={"Retry-After": later}))
    assert seconds is not None and 25 < seconds <= 30
    answers = [_limited(429, "3600"), httpx.Response(200, json={"data": []})]
    sleeps: list[float] = []
    _client(lambda request: answers.pop(0), sleeps).datasets.list()
    assert sleeps == [60.0]


def test_the_last_429_is_raised_with_its_code_and_retry_after() -> None:
    sleeps: list[float] = []
    api = _client(lambda request: _limited(429, "2"), sleeps, attempts=3)
    with pytest.raises(RateLimitedError) as caught:
        api.jobs.create(base_model="m", train_dataset="ds_0123456789abcdef01234567")
    assert (caught.value.code, caught.value.details, caught.value.retry_after) == (
        "too_many_active_jobs",
        {"max": 1},
        2.0,
    )
    assert sleeps == [2.0, 2.0]


def test_connection_errors() -> None:
    calls: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        raise httpx.ConnectError("connection refused", request=request)

    sleeps: list[float] = []
    with pytest.raises(ConnectionFailed):
        _client(refuse, sleeps, attempts=3).jobs.cancel("job_1")
    # Nothing was sent: retrying even a POST without Idempotency-Key is safe.
    assert (calls, sleeps) == (["POST"] * 3, [0.5, 1.0])

    def reset(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        raise httpx.ReadError("reset", request=request)

    calls.clear()
    with pytest.raises(ConnectionFailed):
        _client(reset, [], attempts=3).jobs.cancel("job_1")
    assert calls == ["POST"]  # it may have arrived: a POST without a key is not sent again
    calls.clear()
    with pytest.raises(ConnectionFailed):
        _client(reset, [], attempts=3).jobs.get("job_1")
    assert calls == ["GET"] * 3
