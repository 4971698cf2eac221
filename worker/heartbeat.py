"""The worker main process's heartbeat: its `worker_heartbeats` row, refreshed from a daemon
thread every EMBEDTUNE_WORKER_HEARTBEAT_S seconds and deleted when the worker shuts down.

The thread uses an engine of its own without a pool, so no connection of it outlives a beat: the
pool processes forked from this process never inherit an idle connection of it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.db.session import make_engine
from app.settings import Settings
from app.workers import service

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(
        self,
        settings: Settings,
        node: str,
        concurrency: int,
        *,
        gpu_type: str | None,
        gpus: int,
        queues: Sequence[str],
    ) -> None:
        self.node = node[:255]
        self.queue = settings.queue
        self.concurrency = concurrency
        self.gpu_type = gpu_type
        self.gpus = gpus
        self.queues = list(queues)
        self.interval_s = settings.worker_heartbeat_s
        self._engine: Engine = make_engine(settings.resolved_database_url, pooled=False)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def start(self) -> None:
        """Record the worker at once, then keep its row fresh."""
        self._beat()
        self._thread.start()

    def _beat(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            try:
                with Session(self._engine) as session, session.begin():
                    service.beat(
                        session,
                        self.node,
                        self.queue,
                        self.concurrency,
                        gpu_type=self.gpu_type,
                        gpus=self.gpus,
                        queues=self.queues,
                    )
            except Exception:
                # The database may be back by the next beat; until then /health stops counting
                # this worker, which is what a worker that cannot reach the database deserves.
                log.warning("worker heartbeat failed; will retry", exc_info=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._beat()

    def stop(self) -> None:
        """Stop beating and delete the row (idempotent). Waits for a beat in progress, so the
        row cannot come back after the delete."""
        self._stop.set()
        with self._lock:
            try:
                with Session(self._engine) as session, session.begin():
                    service.remove(session, self.node)
            except Exception:
                log.warning("could not remove the worker's heartbeat row", exc_info=True)
