"""Webhooks end to end: the real API and worker processes (pg_stack) send a job's events to a
receiver of the test's own (an HTTP server on loopback), signed by the Standard Webhooks spec,
in order, and retry a receiver that fails. The API-level rules (validation, private URLs,
secret shown once, team isolation): tests/fast/test_webhooks_api.py."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import TINY_MODEL, Stack
from tests.support.services import auth_headers, create_api_key, upload, wait_for_job

ALL_EVENTS = [
    "job.queued",
    "job.started",
    "job.progress",
    "job.evaluated",
    "job.succeeded",
    "job.failed",
    "job.cancelled",
    "job.retried",
]


class Receiver:
    """A webhook receiver on a free loopback port: records every request (path, headers,
    body); paths starting with /flaky answer 503 to their first `fail` requests."""

    def __init__(self, fail: int = 2) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.fail = fail
        self._flaky = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    receiver.requests.append((self.path, dict(self.headers.items()), body))
                    failing = self.path.startswith("/flaky") and receiver._flaky < receiver.fail
                    if failing:
                        receiver._flaky += 1
                self.send_response(503 if failing else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def at(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        with self._lock:
            return [(h, b) for p, h, b in self.requests if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def team(pg_stack: Stack) -> Iterator[httpx.Client]:
    """A team of its own: its jobs' webhooks are the only ones its endpoints get."""
    key = create_api_key(pg_stack.env, f"hooks-{secrets.token_hex(4)}")
    with httpx.Client(base_url=pg_stack.base_url, headers=auth_headers(key), timeout=60) as c:
        yield c


def _wait(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_a_job_s_events_are_delivered_signed_in_order_and_retried(
    pg_stack: Stack,
    team: httpx.Client,
    receiver: Receiver,
    triplet_files: dict[str, Path],
) -> None:
    ok = team.post("/webhooks", json={"url": f"{receiver.url}/ok", "events": ALL_EVENTS})
    assert ok.status_code == 201, ok.text
    flaky = team.post(
        "/webhooks",
        json={"url": f"{receiver.url}/flaky", "events": ["job.queued", "job.succeeded"]},
    )
    assert flaky.status_code == 201, flaky.text

    dataset = upload(team, triplet_files["train"], name="hooks-train")
    assert dataset.status_code == 201, dataset.text
    r = team.post(
        "/jobs",
        json={
            "name": "hooks",
            "base_model": TINY_MODEL,
            "train_dataset": dataset.json()["id"],
            "hyperparameters": {"batch_size": 8, "max_steps": 2},
        },
    )
    assert r.status_code == 202, r.text
    job, _ = wait_for_job(team, r.json()["id"])
    assert job["status"] == "succeeded", job

    def types(path: str, secret: str) -> list[str]:
        return [Webhook(secret).verify(b, h)["type"] for h, b in receiver.at(path)]

    ok_secret = ok.json()["secret"]
    _wait(lambda: "job.succeeded" in types("/ok", ok_secret))
    got = types("/ok", ok_secret)
    # In order: queued, started, (progress and evaluations), succeeded, each once.
    assert got[0] == "job.queued" and got[1] == "job.started" and got[-1] == "job.succeeded"
    assert set(got[2:-1]) <= {"job.progress", "job.evaluated"}, got
    assert "job.evaluated" in got, got
    ids = [h["webhook-id"] for h, _ in receiver.at("/ok")]
    assert len(ids) == len(set(ids))
    last = Webhook(ok_secret).verify(*reversed(receiver.at("/ok")[-1]))
    assert last["data"]["job"]["id"] == job["id"]
    assert last["data"]["job"]["status"] == "succeeded"
    assert last["data"]["job"]["model"]["sha256"] == job["model"]["sha256"]
    events = team.get(f"/jobs/{job['id']}/events").json()["data"]
    assert last["data"]["event"] == events[-1]

    deliveries = team.get(f"/webhooks/{ok.json()['id']}/deliveries", params={"limit": 100})
    assert {d["status"] for d in deliveries.json()["data"]} == {"delivered"}
    assert len(deliveries.json()["data"]) == len(got)

    # The flaky receiver answered 503 twice: the first message was retried (same webhook-id),
    # and the second was held back until the first went through.
    flaky_secret = flaky.json()["secret"]
    _wait(lambda: "job.succeeded" in types("/flaky", flaky_secret))
    flaky_got = receiver.at("/flaky")
    assert types("/flaky", flaky_secret) == ["job.queued"] * 3 + ["job.succeeded"]
    assert len({h["webhook-id"] for h, _ in flaky_got[:3]}) == 1
    listed = team.get(f"/webhooks/{flaky.json()['id']}/deliveries").json()["data"]
    attempts = {d["type"]: (d["status"], d["attempts"]) for d in listed}
    assert attempts == {"job.queued": ("delivered", 3), "job.succeeded": ("delivered", 1)}


def test_another_team_gets_nothing_of_this_team_s_jobs(
    pg_stack: Stack, team: httpx.Client, receiver: Receiver
) -> None:
    made = team.post("/webhooks", json={"url": f"{receiver.url}/mine", "events": ALL_EVENTS})
    assert made.status_code == 201, made.text
    assert pg_stack.client.get(f"/webhooks/{made.json()['id']}").status_code == 404
    listed = pg_stack.client.get("/webhooks").json()["data"]
    assert made.json()["id"] not in [w["id"] for w in listed]
