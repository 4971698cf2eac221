"""Engine and session factory. Services never commit; the request or task boundary does."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from app.settings import get_settings

log = logging.getLogger(__name__)

# session.info key: what the transaction's owner runs once it has committed (app.db.session.commit).
_AFTER_COMMIT = "embedtune.after_commit"


def make_engine(url: str, *, pooled: bool = True) -> Engine:
    extra: dict[str, Any] = {} if pooled else {"poolclass": NullPool}
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **extra
        )

        # The API and a worker write the same file: WAL lets readers run beside a writer and
        # busy_timeout makes a writer wait instead of failing with "database is locked".
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if pooled:
        extra = {
            "pool_size": POOL_SIZE,
            "max_overflow": POOL_OVERFLOW,
            "pool_recycle": POOL_RECYCLE_S,
        }
    engine = create_engine(url, **extra)
    if pooled:
        _ping_when_idle(engine)
    return engine


# A pooled connection idle longer than this is pinged before use (a restarted or failed-over
# database, a proxy's idle timeout); one used moments ago is not, so a busy API does not pay a
# round trip per request (pool_pre_ping would). A connection that dies mid-use anyway is
# detected by SQLAlchemy, which then discards every pooled connection opened before it.
PING_AFTER_IDLE_S = 1.0
# Connections kept open per process, and opened beyond them under bursts. A connection above
# the kept ones is closed when given back, so concurrency past POOL_SIZE pays PostgreSQL's
# connection start (a backend process) per request: keep it above what a process runs at once.
POOL_SIZE = 10
POOL_OVERFLOW = 20
# Connections are replaced after this long whatever happens (server-side timeouts, leaks).
POOL_RECYCLE_S = 1800


def _ping_when_idle(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _checked_in(_: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            cursor = dbapi_conn.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
            dbapi_conn.rollback()
        except Exception as exc:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError(str(exc)) from exc


@lru_cache
def get_engine() -> Engine:
    settings = get_settings()
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return make_engine(settings.resolved_database_url)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


def after_commit(session: Session, action: Callable[[], object]) -> None:
    """Run `action` once the session's transaction has committed (never if it rolls back):
    work that must not happen for data that may still vanish, like sending a job to the broker
    or deleting a stored object. Whoever owns the transaction (`transaction`) runs it."""
    session.info.setdefault(_AFTER_COMMIT, []).append(action)


def commit(session: Session) -> None:
    """Commit, then run what `after_commit` deferred, in order. The data is committed by then,
    so an action that fails is logged, not raised: the caller's answer stays true."""
    session.commit()
    actions: list[Callable[[], object]] = session.info.pop(_AFTER_COMMIT, [])
    for action in actions:
        try:
            action()
        except Exception:
            log.exception("an action after the commit failed")


@contextmanager
def transaction(session: Session) -> Iterator[Session]:
    """`session`'s one transaction: commits (then the after-commit actions) when the block ends
    cleanly, rolls back (dropping them) otherwise; the session is closed either way."""
    try:
        yield session
        commit(session)
    except BaseException:
        session.info.pop(_AFTER_COMMIT, None)
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def unit_of_work() -> Iterator[Session]:
    """One transaction in a new session: commits when the block ends cleanly, rolls back
    otherwise."""
    with transaction(get_sessionmaker()()) as session:
        yield session
