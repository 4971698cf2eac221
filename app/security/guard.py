"""The ASGI middleware every request passes before a route sees it.

In this order, reading nothing but the request line and headers until the caller is known:

1. A credential in the query string (``?api_key=...``) is refused with 401: URLs end up in
   logs and browser histories, keys go in the Authorization header only.
2. Routes that need a credential (all but the public ones) authenticate from the headers: a
   team API key, or the admin token under /admin. A client address past its failed
   authentications gets 429 (app.security.throttle). So an unauthenticated request costs no
   body read, however large a body it announces or streams.
3. Every body but the dataset upload's (streamed to disk under the team's upload limit by
   app.datasets.upload) is bounded by EMBEDTUNE_MAX_JSON_BYTES: 413 from Content-Length, or as
   soon as the streamed bytes pass it, before anything parses it.
4. HEAD is answered wherever GET is (without the body), and every response gets
   ``X-Content-Type-Options: nosniff`` and, unless the route set its own, a
   Content-Security-Policy that allows nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import anyio
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.auth import keys
from app.auth.deps import (
    AUTHENTICATED_TEAM,
    authenticate_request,
    check_admin_token,
    missing_key,
    remembered_team,
)
from app.auth.models import Team
from app.db.session import get_sessionmaker
from app.deps import REQUEST_SESSION
from app.errors import (
    AppError,
    PayloadTooLarge,
    Unauthorized,
    app_error_response,
    database_error_response,
)
from app.metrics.router import check_metrics_token
from app.security.redact import KEY_QUERY_PARAMS
from app.security.throttle import AuthThrottle
from app.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Paths anyone may read: the health check and the API's own documentation.
PUBLIC_PATHS = frozenset({"/health", "/docs", "/redoc", "/openapi.json"})
# Prometheus' scrape: open, or behind EMBEDTUNE_METRICS_TOKEN when that is set.
METRICS_PATH = "/metrics"
# The dashboard's pages and the static assets (its own and the docs pages'): shells and files
# that hold no data; their scripts call the API with the key (app.ui).
UI_PATH = "/ui"
PUBLIC_PREFIXES = ("/ui/", "/static/")
ADMIN_PREFIX = "/admin/"
# The one route whose body is not JSON: it streams to disk under the upload limit instead.
UPLOAD_ROUTE = ("POST", "/datasets")
# A policy for responses that are not pages (JSON, archives): nothing may load or frame them.
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'"


class _Disconnected(Exception):
    """The client went away while its body was being read."""


# Set on the scope of a HEAD request, which the routes see as GET.
HEAD_SCOPE_KEY = "embedtune.head"


def route_kind(path: str) -> str:
    """'public', 'metrics', 'admin' or 'team': which credential the path needs."""
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES) or path == UI_PATH:
        return "public"
    if path == METRICS_PATH:
        return "metrics"
    if path.startswith(ADMIN_PREFIX) or path == ADMIN_PREFIX.rstrip("/"):
        return "admin"
    return "team"


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, None without one."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def _key_in_query(query_string: bytes) -> str | None:
    for name, _ in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name.lower() in KEY_QUERY_PARAMS:
            return name
    return None


class RequestGuard:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.throttle = AuthThrottle(settings.auth_failures_per_minute)
        # SHA-256 of a presented key -> the lock of its lookup in progress (see _look_up).
        self._lookups: dict[str, anyio.Lock] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = scope["method"] == "HEAD"
        if head:
            # Routes may look at HEAD_SCOPE_KEY to skip producing a body nobody will get.
            scope = dict(scope, method="GET", **{HEAD_SCOPE_KEY: True})
        send = _with_headers(_without_body(send) if head else send)
        try:
            try:
                await self._authenticate(scope)
                if (scope["method"], scope["path"]) != UPLOAD_ROUTE:
                    receive = await self._bounded_body(scope, receive)
            except AppError as exc:
                await _unread_body(app_error_response(exc))(scope, receive, send)
                return
            except DBAPIError as exc:  # the key could not be checked: 503 when the database is down
                await _unread_body(database_error_response(exc))(scope, receive, send)
                return
            except _Disconnected:
                return
            await self.app(scope, receive, send)
        finally:
            await _close_request_session(scope)

    async def _authenticate(self, scope: Scope) -> None:
        name = _key_in_query(scope.get("query_string", b""))
        if name is not None:
            raise Unauthorized(
                f"credentials are not accepted in the URL (query parameter '{name}'): URLs end "
                "up in logs; send the header `Authorization: Bearer <key>` instead"
            )
        kind = route_kind(scope["path"])
        if kind == "public" or (kind == "metrics" and self.settings.metrics_token is None):
            return
        client = scope.get("client")
        address = client[0] if client else "unknown"
        self.throttle.check(address)
        token = bearer_token(scope.get("headers", []))
        try:
            if kind == "admin":
                check_admin_token(self.settings, token)
            elif kind == "metrics":
                check_metrics_token(self.settings, token)
            elif not token:
                raise missing_key()
            else:
                # A key this process checked moments ago costs no database round trip (nor a
                # thread); otherwise the request's session is opened here, the key checked in
                # it, and the route carries on in that same session (app.deps).
                team = remembered_team(token) or await self._look_up(scope, token)
                scope.setdefault("state", {})[AUTHENTICATED_TEAM] = team
        except Unauthorized:
            self.throttle.failed(address)
            raise

    async def _look_up(self, scope: Scope, token: str) -> Team:
        # One lookup at a time per key: when a remembered key expires under load, the requests
        # that carry it wait for the first one's answer instead of each asking the database.
        digest = keys.hash_key(token)  # held while it waits: not the key itself
        lock = self._lookups.setdefault(digest, anyio.Lock())
        try:
            async with lock:
                team = remembered_team(token)
                if team is None:
                    state = scope.setdefault("state", {})
                    session = state[REQUEST_SESSION] = get_sessionmaker()()
                    team = await anyio.to_thread.run_sync(
                        authenticate_request, session, token, self.settings
                    )
                return team
        finally:
            if not lock.statistics().tasks_waiting:
                self._lookups.pop(digest, None)

    async def _bounded_body(self, scope: Scope, receive: Receive) -> Receive:
        """The whole body, read up to EMBEDTUNE_MAX_JSON_BYTES, replayed to the app."""
        limit = self.settings.max_json_bytes
        for name, value in scope.get("headers", []):
            if name.lower() == b"content-length" and value.isdigit() and int(value) > limit:
                raise _body_too_large(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _body_too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: only the disconnect is left to hear

        return replay


async def _close_request_session(scope: Scope) -> None:
    """Ends the session the guard opened when the route's dependency did not (a 422, a 413,
    an error before the route): rolled back, its connection back in the pool."""
    session = scope.get("state", {}).get(REQUEST_SESSION)
    if isinstance(session, Session) and session.in_transaction():
        await anyio.to_thread.run_sync(session.close)


def _body_too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body is larger than the limit of {limit} bytes (setting "
        "EMBEDTUNE_MAX_JSON_BYTES)",
        {"limit_bytes": limit},
    )


def _unread_body(response: JSONResponse) -> JSONResponse:
    # The body was not read: the connection cannot be reused for another request.
    response.headers["Connection"] = "close"
    return response


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            names = {name.lower() for name, _ in headers}
            if b"x-content-type-options" not in names:
                headers.append((b"x-content-type-options", b"nosniff"))
            if b"content-security-policy" not in names:
                headers.append((b"content-security-policy", DEFAULT_CSP.encode()))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


def _without_body(send: Send) -> Send:
    """For HEAD: the GET response's status and headers (Content-Length included), no body."""
    finished = False

    async def wrapped(message: Message) -> None:
        nonlocal finished
        if message["type"] != "http.response.body":
            await send(message)
        elif not finished:
            finished = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    return wrapped
