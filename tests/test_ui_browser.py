"""The /ui dashboard and the offline /docs, in a real browser (Playwright driving Debian's
Chromium) against the real stack: the API and a Celery worker on PostgreSQL and Redis.

Screenshots of the main pages are taken on every run; with EMBEDTUNE_UPDATE_SCREENSHOTS=1 they
replace the ones in docs/screenshots (shown in the README), else they go to a temporary folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import TINY_MODEL, Stack
from tests.support.services import extract_archive, upload, wait_for_job

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
# Long enough to watch its loss curve grow and to cancel it while it runs (a loss point every
# 4 steps).
LONG_RUN = {"max_steps": 400, "batch_size": 8, "eval_steps": 100}
# Short, with curves worth a screenshot, and a model to download.
SHORT_RUN = {"max_steps": 10, "batch_size": 8, "eval_steps": 2}

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[playwright_sync.Browser]:
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("EMBEDTUNE_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return SCREENSHOTS
    return tmp_path_factory.mktemp("screenshots")


class Tab:
    """A fresh browser context and page that records every URL it requested."""

    def __init__(self, browser: playwright_sync.Browser, stack: Stack) -> None:
        self.stack = stack
        self.context = browser.new_context(
            base_url=stack.base_url, viewport={"width": 1280, "height": 800}, accept_downloads=True
        )
        self.page = self.context.new_page()
        self.urls: list[str] = []
        self.context.on("request", lambda request: self.urls.append(request.url))
        self.console_errors: list[str] = []
        self.page.on(
            "console",
            lambda msg: self.console_errors.append(msg.text) if msg.type == "error" else None,
        )

    def sign_in(self) -> None:
        page = self.page
        page.goto("/ui")
        assert self.stack.api_key
        page.get_by_label("API key").fill(self.stack.api_key)
        page.get_by_role("button", name="Sign in").click()
        page.locator("#jobs-table").wait_for()

    def close(self) -> None:
        self.context.close()
        key = self.stack.api_key
        assert key and not [url for url in self.urls if key in url or "api_key" in url]
        # Everything the pages loaded came from the API itself.
        origin = urlsplit(self.stack.base_url).netloc
        assert {urlsplit(u).netloc for u in self.urls if u.startswith("http")} <= {origin}
        # No page broke its own Content-Security-Policy (an inline style or script would).
        assert not [e for e in self.console_errors if "Content Security Policy" in e]


@pytest.fixture
def tab(browser: playwright_sync.Browser, pg_stack: Stack) -> Iterator[Tab]:
    tab = Tab(browser, pg_stack)
    try:
        yield tab
    finally:
        tab.close()


@pytest.fixture(scope="module")
def datasets(pg_stack: Stack, triplet_files: dict[str, Path]) -> dict[str, str]:
    ids = {}
    for name, path in triplet_files.items():
        r = upload(pg_stack.client, path, name=f"snli-{name}")
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
    return ids


def create_job(stack: Stack, datasets: dict[str, str], name: str, hp: dict[str, int]) -> str:
    r = stack.client.post(
        "/jobs",
        json={
            "base_model": TINY_MODEL,
            "train_dataset": datasets["train"],
            "test_dataset": datasets["test"],
            "name": name,
            "hyperparameters": hp,
        },
    )
    assert r.status_code == 202, r.text
    return r.json()["id"]


@pytest.fixture(scope="module")
def jobs(pg_stack: Stack, datasets: dict[str, str]) -> dict[str, str]:
    """A long job and a short one, queued at once: the worker (one job at a time) runs the long
    one while the first tests sign in, then the short one once the long one is cancelled."""
    return {
        "long": create_job(pg_stack, datasets, "snli-long", LONG_RUN),
        "short": create_job(pg_stack, datasets, "snli-short", SHORT_RUN),
    }


def points(page: playwright_sync.Page, chart: str) -> int:
    return int(page.locator(chart).get_attribute("data-points") or 0)


def test_sign_in_refuses_a_wrong_key_and_keeps_the_key_out_of_urls(
    tab: Tab, jobs: dict[str, str], shots: Path
) -> None:
    page = tab.page
    page.goto("/ui")
    field = page.get_by_label("API key")
    field.wait_for()
    page.screenshot(path=shots / "signin.png")
    field.fill("et_00000000_not-a-key")
    page.get_by_role("button", name="Sign in").click()
    error = page.locator("#signin-error")
    error.wait_for()
    assert "the API key is not valid" in error.inner_text()  # the API's own message
    tab.sign_in()
    assert page.evaluate("sessionStorage.getItem('embedtune.apiKey')") == tab.stack.api_key
    assert tab.stack.api_key not in page.url
    # Sign out: the key leaves the session and the sign-in form is back.
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("API key").wait_for()
    assert page.evaluate("sessionStorage.getItem('embedtune.apiKey')") is None


def test_watch_a_running_job_and_cancel_it(
    tab: Tab, pg_stack: Stack, jobs: dict[str, str], shots: Path
) -> None:
    job_id = jobs["long"]
    tab.sign_in()
    page = tab.page
    page.locator(f"#jobs-body tr[data-job-id='{jobs['short']}']").wait_for()
    # The list follows the job while it runs (it polls).
    page.locator(f"#jobs-body tr[data-job-id='{job_id}'][data-status='running'] progress").wait_for(
        timeout=60_000
    )
    page.screenshot(path=shots / "jobs.png", full_page=True)
    # The status filter asks the API for those jobs only.
    page.locator("#status-filter").select_option("cancelled")
    page.locator(f"#jobs-body tr[data-job-id='{job_id}']").wait_for(state="detached")
    assert "status=cancelled" in page.url
    page.locator("#status-filter").select_option("running")
    page.locator(f"#jobs-body tr[data-job-id='{job_id}']").wait_for()
    statuses = page.locator("#jobs-body tr").evaluate_all("rows => rows.map(r => r.dataset.status)")
    assert set(statuses) == {"running"}

    page.locator(f"#jobs-body tr[data-job-id='{job_id}'] a").click()
    page.wait_for_url(f"**/ui/jobs/{job_id}")
    page.locator("#loss-chart .uplot").wait_for(timeout=60_000)
    first = points(page, "#loss-chart")
    deadline = time.monotonic() + 60
    while points(page, "#loss-chart") <= first:
        assert time.monotonic() < deadline, "the loss curve gained no point"
        page.wait_for_timeout(250)
    assert page.locator("#job-status").inner_text() == "running"

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel job").click()
    page.locator("#job-status.status-cancelled").wait_for(timeout=60_000)
    assert page.locator("#job-status").inner_text() == "cancelled"
    page.locator("#events li[data-type='cancelled']").wait_for()
    assert pg_stack.client.get(f"/jobs/{job_id}").json()["status"] == "cancelled"


def test_job_page_shows_metrics_and_downloads_the_model(
    tab: Tab, pg_stack: Stack, jobs: dict[str, str], shots: Path, tmp_path: Path
) -> None:
    short_job = jobs["short"]
    pg_stack.client.post(f"/jobs/{jobs['long']}/cancel")  # when this test runs alone
    job, _ = wait_for_job(pg_stack.client, short_job, timeout=180)
    assert job["status"] == "succeeded", job
    tab.sign_in()
    page = tab.page
    page.goto(f"/ui/jobs/{short_job}")
    page.locator("#final-table").wait_for()
    assert points(page, "#loss-chart") >= 2 and points(page, "#eval-chart") >= 2
    assert page.locator("#final-table tbody tr").count() >= 5
    page.locator("#events li[data-type='succeeded']").wait_for()
    page.screenshot(path=shots / "job.png", full_page=True)

    with page.expect_download() as info:
        page.get_by_role("button", name="Download model").click()
    archive = tmp_path / "model.tar.gz"
    info.value.save_as(archive)
    model_dir = extract_archive(archive.read_bytes(), tmp_path / "model")

    from sentence_transformers import SentenceTransformer

    roots = {p.parent for p in model_dir.rglob("modules.json")}
    assert len(roots) == 1
    model = SentenceTransformer(str(roots.pop()), device="cpu")
    assert model.encode(["a man plays a guitar"]).shape[0] == 1


def test_datasets_page_shows_the_preflight_reports(
    tab: Tab, datasets: dict[str, str], shots: Path
) -> None:
    tab.sign_in()
    page = tab.page
    page.get_by_role("link", name="Datasets").click()
    page.wait_for_url("**/ui/datasets")
    for dataset_id in datasets.values():
        page.locator(f"#datasets-body tr[data-dataset-id='{dataset_id}']").wait_for()
        page.locator(f"#report-{dataset_id}").wait_for()
    page.screenshot(path=shots / "datasets.png", full_page=True)


@pytest.mark.parametrize(
    ("path", "ready"),
    [("/docs", ".swagger-ui .opblock"), ("/redoc", "text=Download OpenAPI specification")],
)
def test_docs_pages_render_offline(tab: Tab, path: str, ready: str) -> None:
    page = tab.page
    blocked: list[str] = []

    def only_this_server(route: playwright_sync.Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_server)
    page.goto(path)
    page.locator(ready).first.wait_for(timeout=30_000)
    if path == "/docs":
        assert page.locator(".swagger-ui .info .title").inner_text().startswith("Embedtune")
        assert page.locator(".opblock").count() >= 10
    assert blocked == []
