"""This process's memory of valid API keys, so a request need not ask the database who it is.

An entry lives EMBEDTUNE_AUTH_CACHE_S seconds (default 2): a key revoked elsewhere (another API
process, another machine, `embedtune keys revoke`) stops working within that bound. A key
revoked, or a team changed, through this process is forgotten once that change commits, and
a lookup that read the database before the change cannot store its stale answer after it (the
generation check in `put`). Entries are keyed by the SHA-256 of the presented key, as stored
in the database: the process keeps no key in clear.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from app.auth.models import Team

# More distinct valid keys than this in one bound's time is not a workload: the oldest go.
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class _Entry:
    team: Team
    key_id: str
    until: float


class KeyCache:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        # Bumped by every forget: a lookup that started before it must not store its answer.
        self._generation = 0

    @property
    def generation(self) -> int:
        return self._generation

    def get(self, digest: str) -> Team | None:
        """The team of the key whose hash is `digest`, if remembered and not expired."""
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry.until <= time.monotonic():
            self._entries.pop(digest, None)
            return None
        return entry.team

    def put(self, digest: str, team: Team, key_id: str, ttl_s: float, generation: int) -> None:
        """Remember a key found valid by a lookup that began at `generation`."""
        if ttl_s <= 0:
            return
        # A detached copy: the caller's row belongs to its session, this one to every request.
        snapshot = Team(id=team.id, name=team.name, limits=team.limits, created_at=team.created_at)
        with self._lock:
            if generation != self._generation:
                return
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.pop(next(iter(self._entries)))
            self._entries[digest] = _Entry(snapshot, key_id, time.monotonic() + ttl_s)

    def forget(self, *, key_id: str | None = None, team_id: str | None = None) -> None:
        """Drop the entries of key `key_id` and/or of every key of team `team_id`."""
        with self._lock:
            self._generation += 1
            self._entries = {
                digest: entry
                for digest, entry in self._entries.items()
                if entry.key_id != key_id and entry.team.id != team_id
            }

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()


keys_seen = KeyCache()
