"""Failed authentication is throttled per client address: past `auth_failures_per_minute`
failures in a moving minute, every request from that address that needs a credential gets 429
with Retry-After until the window has room again (whatever key it carries, so guessing stops).

The window is kept in the API process's memory (the `limits` library's moving window): with
several API processes, each counts its own failures.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from app.errors import TooManyRequests

_NAMESPACE = "auth-failures"


class AuthThrottle:
    def __init__(self, failures_per_minute: int) -> None:
        self._item = RateLimitItemPerMinute(failures_per_minute)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, address: str) -> None:
        """429 too_many_auth_failures when `address` has used up its failures."""
        if self._limiter.test(self._item, _NAMESPACE, address):
            return
        stats = self._limiter.get_window_stats(self._item, _NAMESPACE, address)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise TooManyRequests(
            f"too many failed authentications from this address (at most "
            f"{self._item.amount} a minute); retry after {retry_after} s with a valid key",
            {"retry_after_s": retry_after},
            code="too_many_auth_failures",
            headers={"Retry-After": str(retry_after)},
        )

    def failed(self, address: str) -> None:
        self._limiter.hit(self._item, _NAMESPACE, address)
