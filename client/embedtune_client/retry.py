"""Retrying requests: a small loop instead of a dependency (the client needs httpx and pydantic
only). Retries connection errors and 429/503 answers with exponential backoff, waiting what a
`Retry-After` header asks for when there is one (capped at `max_delay`).

What is safe to retry: a connection that never opened sent nothing, so any request may be sent
again; a connection lost later may have delivered the request, so only idempotent requests
(GET, and POSTs carrying an `Idempotency-Key`) are sent again then."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from embedtune_client.errors import ConnectionFailed

RETRY_STATUSES = frozenset({429, 503})


@dataclass
class RetryPolicy:
    """How often and how long to retry. `sleep` is injectable (tests, async shims).

    attempts: tries in all (1 = no retry). Backoff: base_delay * 2**n, at most max_delay, or the
    server's Retry-After (also at most max_delay).
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep)

    def backoff(self, retry_number: int) -> float:
        return float(min(self.max_delay, self.base_delay * 2**retry_number))


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Seconds a `Retry-After` header asks to wait (delta-seconds or an HTTP date), else None."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _never_sent(exc: httpx.TransportError) -> bool:
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def send_with_retry(
    send: Callable[[], httpx.Response], policy: RetryPolicy, *, idempotent: bool
) -> httpx.Response:
    """Call `send` (which builds and sends one request, and must be callable again) until it
    returns a response that is not 429/503 or the attempts run out; returns the last response.

    Raises ConnectionFailed when the last attempt could not reach the server, or at once when
    a connection failed after the request may have been delivered and it is not `idempotent`.
    """
    for attempt in range(policy.attempts):
        last = attempt == policy.attempts - 1
        try:
            response = send()
        except httpx.TransportError as exc:
            if last or not (idempotent or _never_sent(exc)):
                raise ConnectionFailed(f"{type(exc).__name__}: {exc}") from exc
            policy.sleep(policy.backoff(attempt))
            continue
        if response.status_code not in RETRY_STATUSES or last:
            return response
        wait = retry_after_seconds(response)
        response.close()
        policy.sleep(min(policy.max_delay, wait) if wait is not None else policy.backoff(attempt))
    raise AssertionError("unreachable: the last attempt returns or raises")
