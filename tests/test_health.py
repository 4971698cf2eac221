from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import Stack
from tests.support.services import Process, free_port, python_cli, wait_for_response


def test_health_ok(pg_stack: Stack) -> None:
    # The worker's first heartbeat comes once it is ready, which can be after the API is.
    deadline = time.monotonic() + 60
    while True:
        r = pg_stack.client.get("/health")
        assert r.status_code == 200
        body = r.json()
        if body["workers"]["alive"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {k: body[k] for k in ("status", "database", "broker")} == {
        "status": "ok",
        "database": "ok",
        "broker": "ok",
    }
    # The stack's worker beats; /health counts it under the API's queue.
    assert body["workers"]["alive"] >= 1
    assert body["workers"]["queues"][pg_stack.env["EMBEDTUNE_QUEUE"]] >= 1


def _api_with(env: dict[str, str], name: str, log_dir: Path) -> tuple[Process, str]:
    port = free_port()
    return Process(name, python_cli("api", "--port", str(port)), env, log_dir), (
        f"http://127.0.0.1:{port}"
    )


def test_health_503_when_the_broker_is_down(pg_stack: Stack, tmp_path: Path) -> None:
    nothing_listens = free_port()
    env = {**pg_stack.env, "EMBEDTUNE_BROKER_URL": f"redis://127.0.0.1:{nothing_listens}/0"}
    api, url = _api_with(env, "api-no-broker", tmp_path)
    try:
        r = wait_for_response(f"{url}/health")
        assert r.status_code == 503
        body = r.json()
        assert {k: body[k] for k in ("status", "database", "broker")} == {
            "status": "degraded",
            "database": "ok",
            "broker": "unavailable",
        }
    finally:
        api.stop()


def test_503_with_a_clear_error_when_the_database_is_down(pg_stack: Stack, tmp_path: Path) -> None:
    nothing_listens = free_port()
    env = {
        **pg_stack.env,
        "EMBEDTUNE_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{nothing_listens}/x",
    }
    api, url = _api_with(env, "api-no-db", tmp_path)
    try:
        r = wait_for_response(f"{url}/health")
        assert r.status_code == 503
        assert r.json() == {
            "status": "degraded",
            "database": "unavailable",
            "broker": "ok",
            "storage": "ok",
            "workers": None,
        }
        # The key is checked against the database too: 503, not 401.
        jobs = wait_for_response(f"{url}/jobs", headers=dict(pg_stack.client.headers))
        assert jobs.status_code == 503
        assert jobs.json()["error"]["code"] == "database_unavailable"
    finally:
        api.stop()
