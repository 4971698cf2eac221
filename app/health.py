from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import text

from app.db.session import get_engine, unit_of_work
from app.jobs.waiting import queued_by_queue
from app.queue import broker_reachable
from app.routing import ANY_TYPE
from app.settings import get_settings
from app.storage import ObjectStore, get_store
from app.workers import service as workers

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)

# How long /health waits for the object store before it reports it unavailable.
STORAGE_CHECK_TIMEOUT_S = 4.0


class GpuTypeWorkers(BaseModel):
    workers: int = Field(description="Live workers of this GPU type.", examples=[2])
    gpus: int = Field(description="Devices those workers have together.", examples=[16])


class Workers(BaseModel):
    alive: int = Field(
        description="Worker processes seen within three heartbeats (EMBEDTUNE_WORKER_HEARTBEAT_S).",
        examples=[1],
    )
    queues: dict[str, int] = Field(
        description="Queue -> live workers taking jobs from it (a worker takes every queue its "
        "GPU type and device count serve). This API's queue, and every queue jobs wait in, is "
        "always listed, with 0 when no live worker takes it.",
        examples=[{"embedtune": 3, "embedtune.h100": 2, "embedtune.h100.x2": 2}],
    )
    gpu_types: dict[str, GpuTypeWorkers] = Field(
        default_factory=dict,
        description="GPU type -> its live workers and their devices; `any` for workers started "
        "without a type.",
        examples=[{"h100": {"workers": 2, "gpus": 4}, "any": {"workers": 1, "gpus": 1}}],
    )


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        description="`degraded` with 503 when the database, the broker or the object store is "
        "down; `degraded` with 200 when jobs wait in a queue that no live worker takes."
    )
    database: Literal["ok", "unavailable"]
    broker: Literal["ok", "unavailable"]
    storage: Literal["ok", "unavailable"] = Field(
        description="The object store (EMBEDTUNE_STORAGE_URL) where datasets, checkpoints and "
        "models are kept: `unavailable` when it cannot be reached or refuses the service "
        "(down, no bucket, no credentials) or does not answer within "
        f"{STORAGE_CHECK_TIMEOUT_S:g} s; uploads and downloads fail then."
    )
    workers: Workers | None = Field(
        None, description="Live workers, from their heartbeats; null when the database is down."
    )


def _storage_ok(store: ObjectStore) -> bool:
    try:
        store.check()
        return True
    except Exception as exc:
        log.warning("object store %s unavailable: %s", store.location, exc)
        return False


def _start_check(store: ObjectStore) -> Future[bool]:
    # A daemon thread, not a pool's: a check that hangs (S3 timeouts and retries can take a
    # minute) must not hold up the process's exit.
    result: Future[bool] = Future()
    thread = threading.Thread(
        target=lambda: result.set_result(_storage_ok(store)), name="health-storage", daemon=True
    )
    thread.start()
    return result


_probe_lock = threading.Lock()
# The check in progress and its store: a store that hangs holds one thread, however often
# /health checks meanwhile (a check in progress is shared, not started again).
_probe: tuple[ObjectStore, Future[bool]] | None = None


def _storage_probe() -> Future[bool] | None:
    """The store's check() in progress (started when none is); None when
    EMBEDTUNE_STORAGE_URL names no store."""
    global _probe
    try:
        store = get_store()  # made once per process: boto3 is slow
    except ValueError as exc:
        log.warning("object store unavailable: %s", exc)
        return None
    with _probe_lock:
        if _probe is None or _probe[0] is not store or _probe[1].done():
            _probe = (store, _start_check(store))
        return _probe[1]


def _storage_available(probe: Future[bool] | None, deadline: float) -> bool:
    """The probe's outcome by `deadline` (time.monotonic()); False when it failed or is late."""
    if probe is None:
        return False
    try:
        return probe.result(timeout=max(0.0, deadline - time.monotonic()))
    except FutureTimeout:
        return False


def _database_ok() -> bool:
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


def _workers_and_stranded() -> tuple[Workers, bool] | None:
    """Live workers (per queue, per GPU type) and whether jobs wait in a queue no live worker
    takes; None when the database fails."""
    settings = get_settings()
    try:
        with unit_of_work() as session:
            live = workers.alive(session, settings.worker_heartbeat_s)
            waiting = queued_by_queue(session, settings.queue)
    except Exception:
        return None
    queues = workers.by_queue(live)
    for queue in (settings.queue, *waiting):
        queues.setdefault(queue, 0)
    gpu_types: dict[str, GpuTypeWorkers] = {}
    for worker in live:
        seen = gpu_types.setdefault(worker.gpu_type or ANY_TYPE, GpuTypeWorkers(workers=0, gpus=0))
        seen.workers += 1
        seen.gpus += worker.gpus
    stranded = any(queues[queue] == 0 for queue in waiting)
    return Workers(alive=len(live), queues=queues, gpu_types=gpu_types), stranded


def check() -> tuple[Health, int]:
    """Every check of /health, now: the body and its status code (200, or 503 when the
    database, the broker or the store fails). Blocks for up to STORAGE_CHECK_TIMEOUT_S."""
    deadline = time.monotonic() + STORAGE_CHECK_TIMEOUT_S
    storage = _storage_probe()  # in its own thread, beside the other checks
    db_ok = _database_ok()
    broker_ok = broker_reachable()
    seen = _workers_and_stranded() if db_ok else None
    storage_ok = _storage_available(storage, deadline)
    stranded = seen is not None and seen[1]
    up = db_ok and broker_ok and storage_ok
    body = Health(
        status="ok" if up and not stranded else "degraded",
        database="ok" if db_ok else "unavailable",
        broker="ok" if broker_ok else "unavailable",
        storage="ok" if storage_ok else "unavailable",
        workers=seen[0] if seen else None,
    )
    return body, 200 if up else 503


@dataclass(frozen=True)
class _Answer:
    body: bytes
    status_code: int
    expires: float  # time.monotonic()


class HealthCache:
    """The last answer of :func:`check`, reused for `ttl_s` seconds after its checks finish,
    so that /health costs a dictionary lookup however often load balancers, dashboards and CI
    ask, and the broker sees one connection per `ttl_s` at most. One refresh at a time: the
    requests that find the answer stale all wait for the same checks (single flight)."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._answer: _Answer | None = None
        self._refresh: Future[_Answer] | None = None

    def _fresh(self) -> _Answer | None:
        answer = self._answer
        return answer if answer is not None and time.monotonic() < answer.expires else None

    async def get(self) -> _Answer:
        answer = self._fresh()
        if answer is not None:
            return answer
        with self._lock:
            answer = self._fresh()
            if answer is not None:
                return answer
            if self._refresh is None or self._refresh.done():
                self._refresh = Future()
                self._refresh.set_running_or_notify_cancel()  # no waiter can cancel it
                # A thread of its own rather than the event loop's pool: a check that hangs
                # must not take a pool thread, and the Future is not tied to one event loop.
                threading.Thread(
                    target=self._run, args=(self._refresh,), name="health-check", daemon=True
                ).start()
            refresh = self._refresh
        # shield: a client that disconnects must not cancel the check the others wait for.
        return await asyncio.shield(asyncio.wrap_future(refresh))

    def _run(self, refresh: Future[_Answer]) -> None:
        try:
            body, status_code = check()
            answer = _Answer(
                body.model_dump_json().encode(), status_code, time.monotonic() + self._ttl_s
            )
        except Exception as exc:  # never leave the waiting requests hanging
            log.exception("health check failed")
            refresh.set_exception(exc)
            return
        self._answer = answer
        refresh.set_result(answer)


def _cache(request: Request) -> HealthCache:
    # One per app: each app (a test's, a process's) reads its own settings and sees fresh state.
    cache: HealthCache | None = getattr(request.app.state, "health_cache", None)
    if cache is None:
        cache = HealthCache(get_settings().health_cache_s)
        request.app.state.health_cache = cache
    return cache


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(request: Request) -> Response:
    """200 when the database, the broker and the object store answer, 503 when one does not
    (the store is given STORAGE_CHECK_TIMEOUT_S).

    `status` is `degraded` (still 200: the API itself works) when jobs wait in a queue that no
    live worker takes (none runs, or none has their GPU type and device count), so they wait
    until one starts.

    The answer is up to EMBEDTUNE_HEALTH_CACHE_S (default 1) seconds old: the checks run once
    per that interval however many requests come."""
    answer = await _cache(request).get()
    return Response(answer.body, status_code=answer.status_code, media_type="application/json")
