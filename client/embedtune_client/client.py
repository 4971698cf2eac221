"""`Client`: the connection to one Embedtune API, with `datasets` and `jobs`."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from embedtune_client.datasets import Datasets
from embedtune_client.errors import raise_for_error
from embedtune_client.jobs import Jobs
from embedtune_client.retry import RetryPolicy, send_with_retry

DEFAULT_URL = "http://127.0.0.1:8000"


class Client:
    """An Embedtune API client.

    `url` and `api_key` default to the environment's EMBEDTUNE_URL (else http://127.0.0.1:8000)
    and EMBEDTUNE_API_KEY. `retry` sets how connection errors and 429/503 answers are retried
    (see embedtune_client.retry); `http` is an httpx.Client to send with (e.g. a Starlette
    TestClient), `transport` an httpx transport for the client made here. Use as a context
    manager, or call close().

    >>> with Client() as api:
    ...     job = api.jobs.create(base_model="all-MiniLM-L6-v2", train_dataset="train.jsonl")
    ...     api.jobs.wait(job.id)
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        http: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.url = (url or os.environ.get("EMBEDTUNE_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("EMBEDTUNE_API_KEY")
        self.retry = retry or RetryPolicy()
        # One sleep for retries and polling, so a test can replace both.
        self.sleep = sleep or self.retry.sleep
        if sleep is not None:
            self.retry.sleep = sleep
        self._owns_http = http is None
        self.http = http or httpx.Client(timeout=timeout, transport=transport)
        self.datasets = Datasets(self)
        self.jobs = Jobs(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        headers.update(extra or {})
        return headers

    def send(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool | None = None,
        stream: bool = False,
        headers: Mapping[str, str] | None = None,
        build: Callable[[], dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send a request with retries and return the response, whatever its status. `build`
        makes request arguments afresh for every attempt (an upload reopens its file).
        `stream=True` leaves the body unread (close the response)."""
        if idempotent is None:
            idempotent = method in {"GET", "HEAD"} or "Idempotency-Key" in (headers or {})
        url = f"{self.url}{path}"

        def attempt() -> httpx.Response:
            args = {**kwargs, **(build() if build else {})}
            request = self.http.build_request(method, url, headers=self.headers(headers), **args)
            return self.http.send(request, stream=stream)

        return send_with_retry(attempt, self.retry, idempotent=idempotent)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request and return its JSON body; raises APIError for an error status."""
        response = self.send(method, path, **kwargs)
        raise_for_error(response)
        return response.json()
