from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from app.db.session import get_engine
from app.queue import broker_reachable

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "unavailable"]
    broker: Literal["ok", "unavailable"]


def _database_ok() -> bool:
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health() -> JSONResponse:
    """200 when the database and the broker answer, 503 when either does not."""
    db_ok = await run_in_threadpool(_database_ok)
    broker_ok = await run_in_threadpool(broker_reachable)
    body = Health(
        status="ok" if db_ok and broker_ok else "degraded",
        database="ok" if db_ok else "unavailable",
        broker="ok" if broker_ok else "unavailable",
    )
    return JSONResponse(body.model_dump(), status_code=200 if db_ok and broker_ok else 503)
