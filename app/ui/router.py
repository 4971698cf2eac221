"""The web dashboard: GET /ui, /ui/jobs/{job_id}, /ui/datasets, and the assets under /static.

The pages are shells: public (no key needed to load them) and holding no data. Their script
(static/app.js) keeps the API key in the browser's sessionStorage and reads everything from
the JSON API with `Authorization: Bearer`, so every byte of data stays behind the API's own
authentication. Each page sets a Content-Security-Policy that allows scripts, styles and
connections to this origin only: no inline script or style, nothing from elsewhere.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

if TYPE_CHECKING:
    from fastapi.templating import Jinja2Templates

UI_PREFIX = "/ui"
STATIC_PREFIX = "/static"
_HERE = Path(__file__).parent
STATIC_DIR = _HERE / "static"

PAGE_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ]
)
# The shells change with a deploy only; the key never reaches them, so no page is personal.
_PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
}


@cache
def templates() -> Jinja2Templates:
    """The pages' templates, loaded with the first page: Jinja2 is not needed to start the
    API (issue 12: its start time and idle memory)."""
    from fastapi.templating import Jinja2Templates

    return Jinja2Templates(directory=_HERE / "templates")


router = APIRouter(prefix=UI_PREFIX, include_in_schema=False)

JobId = Annotated[str, PathParam(max_length=100, pattern=r"^[A-Za-z0-9_-]+$")]


def _page(request: Request, template: str, page: str, **context: str) -> HTMLResponse:
    return templates().TemplateResponse(
        request, template, {"page": page, **context}, headers=_PAGE_HEADERS
    )


@router.get("", response_class=HTMLResponse)
def jobs_page(request: Request) -> HTMLResponse:
    """The team's jobs, filtered by status; the sign-in form while no key is in the session."""
    return _page(request, "jobs.html", "jobs")


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: JobId) -> HTMLResponse:
    """One job: curves, metrics, preflight report, events; cancel and download."""
    return _page(request, "job.html", "job", job_id=job_id)


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page(request: Request) -> HTMLResponse:
    """The team's datasets with their preflight reports."""
    return _page(request, "datasets.html", "datasets")


def install_ui(app: FastAPI) -> None:
    """Mount the dashboard's pages at /ui and its assets (and the docs pages') at /static."""
    app.include_router(router)
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="static")
