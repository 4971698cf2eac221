from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select, text

from app.db.session import get_engine, unit_of_work
from app.jobs.models import Job
from app.jobs.states import JobStatus
from app.queue import broker_reachable
from app.settings import get_settings
from app.workers import service as workers

router = APIRouter(tags=["health"])


class Workers(BaseModel):
    alive: int = Field(
        description="Worker processes seen within three heartbeats (EMBEDTUNE_WORKER_HEARTBEAT_S).",
        examples=[1],
    )
    queues: dict[str, int] = Field(
        description="Queue -> live workers taking jobs from it. This API's queue is always "
        "listed, with 0 when no live worker takes it.",
        examples=[{"embedtune": 1}],
    )


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        description="`degraded` with 503 when the database or the broker is down; `degraded` "
        "with 200 when jobs are queued but no live worker takes this API's queue."
    )
    database: Literal["ok", "unavailable"]
    broker: Literal["ok", "unavailable"]
    workers: Workers | None = Field(
        None, description="Live workers, from their heartbeats; null when the database is down."
    )


def _database_ok() -> bool:
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


def _workers_and_queued() -> tuple[Workers, int] | None:
    """Live workers per queue and the number of queued jobs; None when the database fails."""
    settings = get_settings()
    try:
        with unit_of_work() as session:
            queues = workers.alive_by_queue(session, settings.worker_heartbeat_s)
            queued = session.scalar(
                select(func.count()).select_from(Job).where(Job.status == JobStatus.QUEUED.value)
            )
    except Exception:
        return None
    queues.setdefault(settings.queue, 0)
    return Workers(alive=sum(queues.values()), queues=queues), int(queued or 0)


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health() -> JSONResponse:
    """200 when the database and the broker answer, 503 when either does not.

    `status` is `degraded` (still 200: the API itself works) when jobs are queued and no live
    worker takes this API's queue, so they wait until one starts."""
    db_ok = await run_in_threadpool(_database_ok)
    broker_ok = await run_in_threadpool(broker_reachable)
    seen = await run_in_threadpool(_workers_and_queued) if db_ok else None
    stranded = seen is not None and seen[1] > 0 and seen[0].queues[get_settings().queue] == 0
    body = Health(
        status="ok" if db_ok and broker_ok and not stranded else "degraded",
        database="ok" if db_ok else "unavailable",
        broker="ok" if broker_ok else "unavailable",
        workers=seen[0] if seen else None,
    )
    return JSONResponse(body.model_dump(), status_code=200 if db_ok and broker_ok else 503)
