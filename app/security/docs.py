"""The documentation pages (/docs, /redoc) with a Content-Security-Policy of their own.

The pages' assets (Swagger UI, ReDoc) are served by the API itself from /static/vendor
(app/ui/static/vendor, refreshed by scripts/vendor-ui-assets): the pages work offline and load
nothing from elsewhere. The policy allows the pages' inline scripts by their sha256 (no
'unsafe-inline' for scripts), everything else from this origin only.
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

# Served by app.ui's static mount.
VENDOR = "/static/vendor"
FAVICON = "/static/favicon.png"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


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
            f"script-src 'self' {scripts}".strip(),
            # Swagger UI and ReDoc set style attributes and add <style> elements from their
            # scripts, and ReDoc's page has an inline <style>.
            "style-src 'self' 'unsafe-inline'",
            "font-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            # ReDoc runs its search index in a worker it makes from a Blob.
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
    swagger = _page(
        get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Docs",
            swagger_js_url=f"{VENDOR}/swagger-ui-bundle.js",
            swagger_css_url=f"{VENDOR}/swagger-ui.css",
            swagger_favicon_url=FAVICON,
            # No badge image from validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )
    )
    redoc = _page(
        get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{VENDOR}/redoc.standalone.js",
            redoc_favicon_url=FAVICON,
            with_google_fonts=False,
        )
    )

    @router.get("/docs")
    def swagger_page() -> HTMLResponse:
        return swagger

    @router.get("/redoc")
    def redoc_page() -> HTMLResponse:
        return redoc

    return router
