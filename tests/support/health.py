"""Reading /health in tests: its answer is up to EMBEDTUNE_HEALTH_CACHE_S (default 1 s) old,
so a test that changes what it reports polls until the change shows, within a bound."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

# The cache's default 1 s, plus the checks' own time (a stopped broker: up to 3 s) and slack.
HEALTH_WAIT_S = 10.0


class _Answer(Protocol):
    status_code: int

    def json(self) -> Any: ...


A = TypeVar("A", bound=_Answer)


def health_until(
    get: Callable[[], A], accept: Callable[[A], bool], timeout: float = HEALTH_WAIT_S
) -> A:
    """The first answer of `get()` (a GET /health) that `accept`s, or the last one after
    `timeout` seconds (for the test's own assertions to report)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = get()
        if accept(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(0.05)
