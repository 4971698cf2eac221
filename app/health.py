from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from typing import Literal

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
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
# /health is asked meanwhile (a check in progress is shared, not started again).
_probe: tuple[ObjectStore, Future[bool]] | None = None


async def _storage_available() -> bool:
    """The store's check() within STORAGE_CHECK_TIMEOUT_S; False when it fails or is late."""
    global _probe
    try:
        store = await run_in_threadpool(get_store)  # made once per process: boto3 is slow
    except ValueError as exc:  # an EMBEDTUNE_STORAGE_URL that names no store
        log.warning("object store unavailable: %s", exc)
        return False
    with _probe_lock:
        if _probe is None or _probe[0] is not store or _probe[1].done():
            _probe = (store, _start_check(store))
        probe = _probe[1]
    try:
        shared = asyncio.shield(asyncio.wrap_future(probe))
        return await asyncio.wait_for(shared, STORAGE_CHECK_TIMEOUT_S)
    except TimeoutError:
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


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health() -> JSONResponse:
    """200 when the database, the broker and the object store answer, 503 when one does not
    (the store is given STORAGE_CHECK_TIMEOUT_S).

    `status` is `degraded` (still 200: the API itself works) when jobs wait in a queue that no
    live worker takes (none runs, or none has their GPU type and device count), so they wait
    until one starts."""
    storage = asyncio.ensure_future(_storage_available())  # beside the other checks
    db_ok = await run_in_threadpool(_database_ok)
    broker_ok = await run_in_threadpool(broker_reachable)
    storage_ok = await storage
    seen = await run_in_threadpool(_workers_and_stranded) if db_ok else None
    stranded = seen is not None and seen[1]
    up = db_ok and broker_ok and storage_ok
    body = Health(
        status="ok" if up and not stranded else "degraded",
        database="ok" if db_ok else "unavailable",
        broker="ok" if broker_ok else "unavailable",
        storage="ok" if storage_ok else "unavailable",
        workers=seen[0] if seen else None,
    )
    return JSONResponse(body.model_dump(), status_code=200 if up else 503)
