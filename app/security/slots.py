"""Uploads one team may have in progress at once in this API process (EMBEDTUNE_UPLOADS_PER_TEAM),
and the threads upload parsing may use: one team's slow or huge uploads cannot take the
threads and time that /health and other teams' requests need."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
from fastapi import FastAPI

from app.errors import TooManyRequests

UPLOAD_RETRY_AFTER_S = 10
# Threads that validate uploads at once, for all teams; the rest of the thread pool stays free
# for other requests.
UPLOAD_THREADS = 4

_lock = threading.Lock()
_in_progress: dict[str, int] = {}


def parsing_limiter(app: FastAPI) -> anyio.CapacityLimiter:
    """The limiter `app`'s upload parsing runs its threads under (made in its event loop)."""
    limiter = getattr(app.state, "upload_limiter", None)
    if limiter is None:
        limiter = app.state.upload_limiter = anyio.CapacityLimiter(UPLOAD_THREADS)
    return limiter


@contextmanager
def upload_slot(team_id: str, per_team: int) -> Iterator[None]:
    """Hold one of the team's upload slots; 429 too_many_uploads when all are taken."""
    with _lock:
        if _in_progress.get(team_id, 0) >= per_team:
            raise TooManyRequests(
                f"your team already has {per_team} upload(s) in progress (setting "
                "EMBEDTUNE_UPLOADS_PER_TEAM); retry when one has finished",
                {"uploads_in_progress": per_team, "max": per_team},
                code="too_many_uploads",
                headers={"Retry-After": str(UPLOAD_RETRY_AFTER_S)},
            )
        _in_progress[team_id] = _in_progress.get(team_id, 0) + 1
    try:
        yield
    finally:
        with _lock:
            left = _in_progress[team_id] - 1
            if left:
                _in_progress[team_id] = left
            else:
                del _in_progress[team_id]
