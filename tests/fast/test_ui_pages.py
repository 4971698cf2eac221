"""The /ui pages are public shells with a strict policy; the data stays behind the API's key.
(The pages themselves are driven in a real browser by tests/test_ui_browser.py.)"""

from __future__ import annotations

import re

import pytest

from app.security.guard import route_kind
from app.ui.router import PAGE_CSP

PAGES = ("/ui", "/ui/jobs/job_0123abcd", "/ui/datasets")


def test_ui_and_static_paths_are_public_and_nothing_else_is() -> None:
    for path in (*PAGES, "/static/app.js", "/static/vendor/uPlot.iife.min.js"):
        assert route_kind(path) == "public"
    for path in ("/uix", "/ui-jobs", "/jobs", "/staticx/app.js", "/datasets"):
        assert route_kind(path) == "team"


@pytest.mark.parametrize("path", PAGES)
def test_pages_load_without_a_key_and_hold_no_inline_code(client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == PAGE_CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "'unsafe-inline'" not in PAGE_CSP and "form-action 'none'" in PAGE_CSP
    # The policy allows no inline script, style or event handler: the page must have none.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", r.text)
    assert "<style" not in r.text and " style=" not in r.text
    assert not re.search(r"\son[a-z]+=", r.text)
    # Nothing from elsewhere.
    assert not re.search(r"(src|href)=\"(https?:)?//", r.text)


def test_the_job_page_echoes_only_a_well_formed_id(client) -> None:
    r = client.get("/ui/jobs/job_0123abcd")
    assert 'data-job-id="job_0123abcd"' in r.text
    assert client.get('/ui/jobs/"><script>x').status_code == 422


def test_assets_are_served_by_the_api(client) -> None:
    for path, kind in (
        ("/static/app.js", "javascript"),
        ("/static/app.css", "text/css"),
        ("/static/vendor/uPlot.iife.min.js", "javascript"),
        ("/static/vendor/swagger-ui-bundle.js", "javascript"),
        ("/static/vendor/swagger-ui.css", "text/css"),
        ("/static/vendor/redoc.standalone.js", "javascript"),
    ):
        r = client.get(path)
        assert r.status_code == 200 and kind in r.headers["content-type"], path
        assert r.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/missing.js").status_code == 404
    assert client.get("/static/%2e%2e/router.py").status_code == 404


def test_a_key_in_a_ui_url_is_refused(client) -> None:
    assert client.get("/ui?api_key=et_00000000_x").status_code == 401


def test_the_docs_pages_load_their_assets_from_this_server(client) -> None:
    for page in ("/docs", "/redoc"):
        r = client.get(page)
        assert "/static/vendor/" in r.text
        assert not re.search(r"https?://", re.sub(r"<!--.*?-->", "", r.text, flags=re.DOTALL))
        assert "https:" not in r.headers["content-security-policy"]


def test_ui_routes_are_not_in_the_openapi_schema(client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith(("/ui", "/static"))]
