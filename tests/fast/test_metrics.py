"""GET /metrics and the workers part of /health, in-process: request counts by route template
and status, the database figures (jobs by status, queue depth, live workers, failures by error
code), and the optional bearer token."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from app.db.base import utcnow
from app.db.session import unit_of_work
from app.jobs.models import Job
from app.workers import service as workers
from app.workers.models import WorkerHeartbeat
from tests.fast.conftest import client_for
from tests.fast.test_security_http import create_job, upload
from tests.support.health import health_until

QUEUE = "fast-tests"  # the queue tests/fast/conftest.py gives the app


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(sample name, labels) -> value, from a Prometheus text exposition."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(scraped: dict, name: str, **labels: str) -> float | None:  # type: ignore[type-arg]
    return scraped.get((name, frozenset(labels.items())))


def scrape(client) -> dict:  # type: ignore[no-untyped-def, type-arg]
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return samples(r.text)


def test_requests_are_counted_by_route_template_and_status(app, make_key) -> None:
    anonymous = client_for(app)
    team = client_for(app, make_key("metrics"))
    for job_id in ("job_a", "job_b", "job_c"):
        assert team.get(f"/jobs/{job_id}").status_code == 404
    assert anonymous.get("/jobs/job_a").status_code == 401  # refused by the guard, not routed
    assert anonymous.get("/health").status_code == 200
    assert anonymous.get("/no/such/path").status_code in {401, 404}

    scraped = scrape(anonymous)
    count = "embedtune_http_requests_total"
    assert value(scraped, count, method="GET", route="/jobs/{job_id}", status="404") == 3
    assert value(scraped, count, method="GET", route="/jobs/{job_id}", status="401") == 1
    assert value(scraped, count, method="GET", route="/health", status="200") == 1
    routes = {dict(labels)["route"] for (name, labels) in scraped if name == count}
    # Raw paths never become labels.
    assert not any("job_a" in route or "/no/such" in route for route in routes), routes
    latency = "embedtune_http_request_duration_seconds_count"
    assert value(scraped, latency, method="GET", route="/jobs/{job_id}", status="404") == 3
    # A scrape counts itself once it has answered.
    again = scrape(anonymous)
    assert value(again, count, method="GET", route="/metrics", status="200") == 1


def test_jobs_queue_depth_workers_and_failures_come_from_the_database(app, make_key) -> None:
    client = client_for(app, make_key("metrics"))
    dataset = upload(client)["id"]
    jobs = [create_job(client, dataset)["id"] for _ in range(3)]
    with unit_of_work() as session:
        session.execute(
            update(Job)
            .where(Job.id == jobs[0])
            .values(status="failed", error_code="out_of_memory", finished_at=utcnow())
        )

    scraped = scrape(client)
    assert value(scraped, "embedtune_database_up") == 1
    assert value(scraped, "embedtune_jobs", status="queued") == 2
    assert value(scraped, "embedtune_jobs", status="failed") == 1
    assert value(scraped, "embedtune_jobs", status="running") == 0
    assert value(scraped, "embedtune_queue_depth", queue=QUEUE) == 2
    assert value(scraped, "embedtune_jobs_failed", error_code="out_of_memory") == 1
    assert value(scraped, "embedtune_workers_alive", queue=QUEUE) == 0

    with unit_of_work() as session:
        workers.beat(session, "embedtune-1@host", QUEUE, 2)
        workers.beat(session, "embedtune-2@host", "other", 1)
    scraped = scrape(client)
    assert value(scraped, "embedtune_workers_alive", queue=QUEUE) == 1
    assert value(scraped, "embedtune_workers_alive", queue="other") == 1


def test_health_counts_live_workers_and_is_degraded_while_queued_jobs_have_none(
    app, make_key
) -> None:
    client = client_for(app, make_key("health"))
    r = client_for(app).get("/health")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ok",
        "database": "ok",
        "broker": "ok",
        "storage": "ok",
        "workers": {"alive": 0, "queues": {QUEUE: 0}, "gpu_types": {}},
    }

    def health() -> Any:
        return client_for(app).get("/health")

    create_job(client, upload(client)["id"])
    r = health_until(health, lambda r: r.json()["status"] != "ok")
    # The API works; only the queued jobs wait: 200, not 503.
    assert r.status_code == 200
    assert r.json()["status"] == "degraded"
    assert r.json()["workers"] == {"alive": 0, "queues": {QUEUE: 0}, "gpu_types": {}}

    with unit_of_work() as session:
        workers.beat(session, "embedtune-1@host", "elsewhere", 1)
    r = health_until(health, lambda r: r.json()["workers"]["alive"] == 1)
    assert r.json()["status"] == "degraded"

    with unit_of_work() as session:
        workers.beat(session, "embedtune-2@host", QUEUE, 1)
    r = health_until(health, lambda r: r.json()["workers"]["alive"] == 2)
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert r.json()["workers"] == {
        "alive": 2,
        "queues": {QUEUE: 1, "elsewhere": 1},
        "gpu_types": {"any": {"workers": 2, "gpus": 2}},
    }


def test_a_worker_not_seen_for_three_heartbeats_is_not_alive_and_is_pruned_after_a_day(
    app,
) -> None:
    now = utcnow()
    with unit_of_work() as session:
        workers.beat(session, "fresh@host", QUEUE, 1)
        workers.beat(session, "silent@host", QUEUE, 1)
        workers.beat(session, "dead@host", QUEUE, 1)
        session.execute(
            update(WorkerHeartbeat)
            .where(WorkerHeartbeat.node == "silent@host")
            .values(last_seen_at=now - timedelta(seconds=31))  # 3 x the default 10 s, and a bit
        )
        session.execute(
            update(WorkerHeartbeat)
            .where(WorkerHeartbeat.node == "dead@host")
            .values(last_seen_at=now - timedelta(days=1, minutes=1))
        )
    seen = client_for(app).get("/health").json()["workers"]
    assert (seen["alive"], seen["queues"]) == (1, {QUEUE: 1})
    with unit_of_work() as session:
        assert workers.prune(session) == 1
        workers.remove(session, "fresh@host")
    with unit_of_work() as session:
        left = {row.node for row in session.query(WorkerHeartbeat)}
    assert left == {"silent@host"}


def test_the_metrics_token_is_required_when_set(app_with, make_key) -> None:
    app = app_with(METRICS_TOKEN="scrape-secret")
    assert client_for(app).get("/metrics").status_code == 401
    wrong = client_for(app).get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "unauthorized"
    # A team's API key is no metrics token.
    assert client_for(app, make_key("a")).get("/metrics").status_code == 401
    ok = client_for(app).get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
    assert ok.status_code == 200
    assert "embedtune_jobs" in ok.text
    # /health stays public.
    assert client_for(app).get("/health").status_code == 200


def test_metrics_is_open_without_a_token_and_documented_as_text(app) -> None:
    assert client_for(app).get("/metrics").status_code == 200
    operation = client_for(app).get("/openapi.json").json()["paths"]["/metrics"]["get"]
    assert "text/plain" in operation["responses"]["200"]["content"]


def test_wrong_metrics_tokens_are_throttled_like_other_credentials(app_with) -> None:
    app = app_with(METRICS_TOKEN="scrape-secret", AUTH_FAILURES_PER_MINUTE="3")
    client = client_for(app)
    for _ in range(3):
        assert client.get("/metrics", headers={"Authorization": "Bearer guess"}).status_code == 401
    r = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
    assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_auth_failures"
    assert int(r.headers["retry-after"]) >= 1
