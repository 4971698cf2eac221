"""Annotated dependencies so every route reads like its signature."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, TypeVar

import anyio
from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.db.session import get_sessionmaker, transaction
from app.settings import Settings, get_settings

# The request.state attribute that holds the request's session when app.security.guard opened
# it (to authenticate the caller in it) before the route ran.
REQUEST_SESSION = "db_session"
T = TypeVar("T")


def request_session(request: Request) -> Session:
    """The request's session: the one the guard opened, or a new one (kept for the request)."""
    session = getattr(request.state, REQUEST_SESSION, None)
    if not isinstance(session, Session):
        session = get_sessionmaker()()
        setattr(request.state, REQUEST_SESSION, session)
    return session


async def _session(request: Request) -> AsyncIterator[Session]:
    """The request's one transaction, and the only place it commits: when the route returns
    (then the work deferred with app.db.session.after_commit, such as sending a new job to the
    broker), rolled back on error. Authentication ran in it too (app.auth.deps).

    Async so that only the end, which talks to the database, takes a worker thread: a sync
    generator would take one to start (which does nothing) and another to end."""
    boundary = transaction(request_session(request))
    session = boundary.__enter__()  # no I/O: the first statement begins the transaction
    # The end runs outside the thread pool's limit, as FastAPI ends its own generator
    # dependencies: a request that holds a pooled connection must always get a thread to give
    # it back, or requests waiting for a connection in every thread would wait forever.
    limiter = anyio.CapacityLimiter(1)
    try:
        yield session
    except BaseException as exc:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(
                boundary.__exit__, type(exc), exc, exc.__traceback__, limiter=limiter
            )
        raise
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(boundary.__exit__, None, None, None, limiter=limiter)


async def _settings() -> Settings:
    # Async: a plain function dependency would cost a worker-thread round trip per request.
    return get_settings()


# scope="function": the unit of work commits before the response is sent. With the default
# ("request") it would commit after, and a client could act on a 200 (a revoked key, say)
# before the write it reports is visible to its next request.
SessionDep = Annotated[Session, Depends(_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(_settings)]


class Reads:
    """The request's one transaction, for a route that only reads: begun, used and ended in a
    single worker-thread hop (`run`), so a pooled connection is held only while a thread reads
    with it, never while the request waits on the event loop for a thread to commit."""

    def __init__(self, request: Request) -> None:
        self._request = request

    async def run(self, read: Callable[[Session], T]) -> T:
        def work() -> T:
            with transaction(request_session(self._request)) as session:
                return read(session)

        return await run_in_threadpool(work)


async def _reads(request: Request) -> Reads:
    return Reads(request)


ReadsDep = Annotated[Reads, Depends(_reads)]
