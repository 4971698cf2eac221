"""The documentation pages (/docs, /redoc) with a Content-Security-Policy of their own.

The policy allows the pages' scripts by their sha256 (no 'unsafe-inline' for scripts), their
assets from the CDN they name, and API calls to this origin only.
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
_INLINE_STYLE = re.compile(r"<style>(.*?)</style>", re.DOTALL)


def _hashes(pattern: re.Pattern[str], html: str) -> str:
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(m.encode()).digest()).decode() + "'"
        for m in pattern.findall(html)
    )


def content_security_policy(html: str) -> str:
    """A policy for a documentation page: its own inline scripts and styles by hash."""
    scripts = _hashes(_INLINE_SCRIPT, html)
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src https://cdn.jsdelivr.net {scripts}".strip(),
            # Swagger UI and ReDoc set style attributes from their scripts.
            "style-src https://cdn.jsdelivr.net https://fonts.googleapis.com 'unsafe-inline'",
            "font-src https://fonts.gstatic.com",
            "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly",
            "connect-src 'self'",
            "worker-src blob:",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


def _page(response: HTMLResponse) -> HTMLResponse:
    html = bytes(response.body).decode()
    return HTMLResponse(html, headers={"Content-Security-Policy": content_security_policy(html)})


def docs_router(app: FastAPI) -> APIRouter:
    """GET /docs (Swagger UI) and GET /redoc, for `app` (created with docs_url=None)."""
    router = APIRouter(include_in_schema=False)
    openapi_url = app.openapi_url or "/openapi.json"
    swagger = _page(get_swagger_ui_html(openapi_url=openapi_url, title=f"{app.title} - Docs"))
    redoc = _page(get_redoc_html(openapi_url=openapi_url, title=f"{app.title} - ReDoc"))

    @router.get("/docs")
    def swagger_page() -> HTMLResponse:
        return swagger

    @router.get("/redoc")
    def redoc_page() -> HTMLResponse:
        return redoc

    return router
