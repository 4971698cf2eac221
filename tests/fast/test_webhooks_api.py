"""Webhooks in-process: /webhooks CRUD (secret shown once, team isolation, validation, URLs of
private ranges refused), the outbox rows a job event writes, and the sender (signed by the
Standard Webhooks spec, in order per job, retried with backoff) against a mock transport.
The real processes and a real receiver: tests/test_webhooks.py."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook

from app.db.base import utcnow
from app.db.session import unit_of_work
from app.jobs.events import EventType, record_event
from app.settings import get_settings
from app.webhooks import urls
from app.webhooks.models import WebhookDelivery
from app.webhooks.sender import deliver_due, retry_delay
from tests.fast.conftest import client_for
from tests.fast.test_stream import make_job, start, succeed

HOOK = {"url": "https://hooks.example.com/embedtune", "events": ["job.succeeded"]}


@pytest.fixture
def public_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """hooks.example.com resolves to a public address; loopback.example.com to 127.0.0.1."""
    real = socket.getaddrinfo

    def fake(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        answers = {"hooks.example.com": "93.184.216.34", "loopback.example.com": "127.0.0.1"}
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(urls.socket, "getaddrinfo", fake)


def test_the_secret_is_shown_once(
    team_client: Callable[[str], TestClient], public_dns: None
) -> None:
    client = team_client("alpha")
    r = client.post("/webhooks", json=HOOK)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["secret"].startswith("whsec_")
    Webhook(made["secret"])  # a valid Standard Webhooks secret
    assert r.headers["location"] == f"/webhooks/{made['id']}"
    got = client.get(f"/webhooks/{made['id']}").json()
    assert "secret" not in got and got["url"] == HOOK["url"]
    listed = client.get("/webhooks").json()["data"]
    assert [w["id"] for w in listed] == [made["id"]] and "secret" not in listed[0]


def test_another_teams_webhook_is_404(
    team_client: Callable[[str], TestClient], public_dns: None
) -> None:
    made = team_client("alpha").post("/webhooks", json=HOOK).json()
    other = team_client("beta")
    for method, path in (
        ("GET", f"/webhooks/{made['id']}"),
        ("DELETE", f"/webhooks/{made['id']}"),
        ("GET", f"/webhooks/{made['id']}/deliveries"),
    ):
        r = other.request(method, path)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"]["code"] == "not_found"
    assert other.get("/webhooks").json()["data"] == []
    owner = team_client("alpha")
    assert owner.delete(f"/webhooks/{made['id']}").status_code == 204
    assert owner.get(f"/webhooks/{made['id']}").status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:9000/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "https://loopback.example.com/hook",
    ],
)
def test_private_urls_are_refused(
    team_client: Callable[[str], TestClient], public_dns: None, url: str
) -> None:
    r = team_client("alpha").post("/webhooks", json={**HOOK, "url": url})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "webhook_url_refused"
    assert error["details"]["field"] == "url"


def test_private_urls_are_allowed_when_the_operator_says_so(
    app_with: Callable[..., Any], make_key: Callable[[str], str]
) -> None:
    client = client_for(app_with(WEBHOOK_ALLOW_PRIVATE_URLS="1"), make_key("alpha"))
    r = client.post("/webhooks", json={**HOOK, "url": "http://127.0.0.1:8080/hook"})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**HOOK, "url": "ftp://hooks.example.com/x"}, "url"),
        ({**HOOK, "url": "https://" + "a" * 2000 + ".com/"}, "url"),
        ({**HOOK, "url": "not a url"}, "url"),
        ({**HOOK, "events": []}, "events"),
        ({**HOOK, "events": ["job.exploded"]}, "events"),
        ({**HOOK, "events": "job.succeeded"}, "events"),
        ({"url": HOOK["url"]}, "events"),
        ({**HOOK, "extra": 1}, "extra"),
    ],
)
def test_invalid_bodies_are_422_naming_the_field(
    team_client: Callable[[str], TestClient], body: dict[str, Any], field: str
) -> None:
    r = team_client("alpha").post("/webhooks", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "validation_error"
    assert any(d["field"].startswith(field) for d in r.json()["error"]["details"]), r.json()


def test_a_team_has_at_most_20_endpoints(
    team_client: Callable[[str], TestClient], public_dns: None
) -> None:
    client = team_client("alpha")
    for _ in range(20):
        assert client.post("/webhooks", json=HOOK).status_code == 201
    r = client.post("/webhooks", json=HOOK)
    assert r.status_code == 409 and r.json()["error"]["code"] == "too_many_webhooks"


# --- outbox and sender -----------------------------------------------------------------------


class Receiver:
    """An httpx MockTransport that records requests and fails the first `fail` of them."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if len(self.requests) <= self.fail:
            return httpx.Response(503)
        return httpx.Response(204)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))


def _make_due_now() -> None:
    with unit_of_work() as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.status == "pending")
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )


def _deliveries() -> list[WebhookDelivery]:
    with unit_of_work() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.seq)))


def test_job_events_are_signed_and_sent_in_order_and_retried(
    app_with: Callable[..., Any], make_key: Callable[[str], str]
) -> None:
    client = client_for(app_with(WEBHOOK_ALLOW_PRIVATE_URLS="1"), make_key("alpha"))
    events = ["job.queued", "job.started", "job.succeeded", "job.cancelled"]
    made = client.post("/webhooks", json={"url": "http://hooks.test/x", "events": events}).json()
    job_id = make_job("alpha")
    start(job_id)
    with unit_of_work() as session:  # no webhook for these
        record_event(session, job_id, EventType.CHECKPOINT_SAVED, attempt=1, step=1)
        record_event(session, job_id, EventType.EVALUATED, attempt=1, step=1, metrics={})
    succeed(job_id)
    make_job("beta")  # another team's job: nothing for alpha's endpoint
    assert [d.event_type for d in _deliveries()] == ["job.queued", "job.started", "job.succeeded"]

    settings = get_settings()
    receiver = Receiver(fail=1)
    with receiver.client() as http:
        # One round sends only the first of the job's deliveries: the others wait for it.
        assert deliver_due(settings, client=http) == 1
        first = _deliveries()[0]
        assert (first.status, first.attempts, first.last_status_code) == ("pending", 1, 503)
        assert first.next_attempt_at is not None
        assert first.next_attempt_at - utcnow() > timedelta(seconds=retry_delay(settings, 1) - 2)
        assert deliver_due(settings, client=http) == 0  # not due yet
        for _ in range(3):
            _make_due_now()
            deliver_due(settings, client=http)
    assert [d.status for d in _deliveries()] == ["delivered"] * 3
    secret = made["secret"]
    sent = [Webhook(secret).verify(r.content, dict(r.headers)) for r in receiver.requests]
    assert [p["type"] for p in sent] == ["job.queued", "job.queued", "job.started", "job.succeeded"]
    # The retry is the same message: the same webhook-id.
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert ids[0] == ids[1] and len(set(ids)) == 3 and ids[0].startswith("msg_")
    final = sent[-1]["data"]
    assert final["job"]["id"] == job_id and final["job"]["status"] == "succeeded"
    assert final["event"]["type"] == "succeeded" and final["event"]["id"] == 5
    listed = client.get(f"/webhooks/{made['id']}/deliveries").json()
    assert [(d["type"], d["status"]) for d in listed["data"]][0] == ("job.succeeded", "delivered")
    assert sorted(d["attempts"] for d in listed["data"]) == [1, 1, 2]
    json.dumps(listed)


def test_a_delivery_to_a_url_that_turned_private_is_not_sent(
    app_with: Callable[..., Any], make_key: Callable[[str], str], public_dns: None
) -> None:
    client = client_for(app_with(), make_key("alpha"))
    made = client.post("/webhooks", json={**HOOK, "events": ["job.queued"]}).json()
    with unit_of_work() as session:  # DNS changed since: it now points at loopback
        from app.webhooks.models import WebhookEndpoint

        session.get_one(WebhookEndpoint, made["id"]).url = "https://loopback.example.com/x"
    make_job("alpha")
    receiver = Receiver()
    with receiver.client() as http:
        assert deliver_due(get_settings(), client=http) == 1
    assert receiver.requests == []
    (delivery,) = _deliveries()
    assert delivery.status == "pending" and "refused" in (delivery.last_error or "")
