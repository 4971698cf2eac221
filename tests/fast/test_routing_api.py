"""Routing through the API, in-process: a job's `resources` (checked against EMBEDTUNE_GPU_TYPES
and EMBEDTUNE_MAX_GPUS_PER_JOB, 422 naming the field), the queue it is sent to, and where it waits
(`queue`: name, position, live workers, why it waits); /health and /metrics per queue and type."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, update

from app.db.base import utcnow
from app.db.session import get_engine, unit_of_work
from app.jobs.models import Job
from app.routing import queues_for_worker
from app.workers import service as workers
from app.workers.models import WorkerHeartbeat
from tests.fast.conftest import client_for
from tests.fast.test_metrics import scrape, value
from tests.fast.test_security_http import assert_error, create_job, upload
from tests.support.health import health_until

QUEUE = "fast-tests"  # the queue tests/fast/conftest.py gives the app
TYPES = {"GPU_TYPES": "a100,h100,t4", "MAX_GPUS_PER_JOB": "4"}


def beat(node: str, gpu_type: str | None, gpus: int) -> None:
    """A live worker of `gpu_type` with `gpus` devices, as its heartbeat records it."""
    with unit_of_work() as session:
        workers.beat(
            session,
            node,
            QUEUE,
            1,
            gpu_type=gpu_type,
            gpus=gpus,
            queues=queues_for_worker(gpu_type, gpus, QUEUE),
        )


def sent(broker: Path) -> dict[str, str]:
    """Job id -> the queue its message is waiting in, from the filesystem broker's folder
    (kombu names each message file `<time>_<uuid>.<queue>.msg`)."""
    out = {}
    for path in (broker / "queue").glob("*.msg"):
        message = json.loads(path.read_text())
        args = json.loads(base64.b64decode(message["body"]))[0]
        queue = path.name.split(".", 1)[1].removesuffix(".msg")
        out[args[0]] = queue
    return out


@pytest.fixture
def broker(settings_env: dict[str, str]) -> Path:
    return Path(settings_env["EMBEDTUNE_BROKER_URL"].removeprefix("filesystem://"))


def test_a_job_without_resources_runs_anywhere_in_the_default_queue(
    app, make_key, broker: Path
) -> None:
    client = client_for(app, make_key("plain"))
    job = create_job(client, upload(client)["id"])
    assert job["resources"] == {"gpu_type": None, "gpus": 1}
    assert job["queue"] == {
        "name": QUEUE,
        "position": 1,
        "workers": 0,
        "message": "no live worker serves any gpu_type with 1 GPU; the job waits until one starts",
    }
    assert sent(broker) == {job["id"]: QUEUE}


def test_a_job_asking_for_hardware_is_sent_to_that_queue_only(
    app_with, make_key, broker: Path
) -> None:
    client = client_for(app_with(**TYPES), make_key("gpu"))
    dataset = upload(client)["id"]
    typed = create_job(client, dataset, resources={"gpu_type": "h100", "gpus": 2})
    many = create_job(client, dataset, resources={"gpus": 3}, hyperparameters={"batch_size": 12})
    one = create_job(client, dataset, resources={"gpu_type": "a100"})
    assert typed["resources"] == {"gpu_type": "h100", "gpus": 2}
    assert typed["queue"]["name"] == f"{QUEUE}.h100.x2"
    assert typed["queue"]["message"] == (
        "no live worker serves gpu_type 'h100' with 2 GPUs; the job waits until one starts"
    )
    assert many["resources"] == {"gpu_type": None, "gpus": 3}
    assert sent(broker) == {
        typed["id"]: f"{QUEUE}.h100.x2",
        many["id"]: f"{QUEUE}.any.x3",
        one["id"]: f"{QUEUE}.a100",
    }
    # The same on a later read, and recorded on the row.
    again = client.get(f"/jobs/{typed['id']}").json()
    assert again["resources"] == typed["resources"] and again["queue"] == typed["queue"]
    with unit_of_work() as session:
        row = session.get(Job, typed["id"])
        assert row is not None
        assert (row.resources, row.queue) == ({"gpu_type": "h100", "gpus": 2}, f"{QUEUE}.h100.x2")


@pytest.mark.parametrize(
    ("settings", "resources", "field", "details"),
    [
        (TYPES, {"gpu_type": "v100"}, "resources.gpu_type", {"allowed": ["a100", "h100", "t4"]}),
        ({}, {"gpu_type": "h100"}, "resources.gpu_type", {"allowed": []}),
        (TYPES, {"gpus": 5}, "resources.gpus", {"max": 4}),
        ({}, {"gpus": 9}, "resources.gpus", {"max": 8}),
    ],
)
def test_hardware_this_server_does_not_offer_is_422_naming_the_field(
    app_with, make_key, settings, resources, field, details
) -> None:
    client = client_for(app_with(**settings), make_key("refused"))
    dataset = upload(client)["id"]
    r = client.post(
        "/jobs", json={"base_model": "tiny", "train_dataset": dataset, "resources": resources}
    )
    error = assert_error(r, 422, "validation_error")
    assert error["details"] == {"field": field, **details}
    assert error["message"].startswith(f"{field}: ")
    assert client.get("/jobs").json()["data"] == []


def test_a_global_batch_that_does_not_split_over_the_gpus_is_refused(app_with, make_key) -> None:
    client = client_for(app_with(**TYPES), make_key("batch"))
    dataset = upload(client)["id"]
    body = {"base_model": "tiny", "train_dataset": dataset, "resources": {"gpus": 4}}
    r = client.post("/jobs", json={**body, "hyperparameters": {"batch_size": 18}})
    error = assert_error(r, 422, "batch_size_not_divisible")
    assert error["details"] == {"field": "hyperparameters.batch_size", "gpus": 4}
    assert "multiple of 4" in error["message"]
    assert client.get("/jobs").json()["data"] == []
    # The global batch: 16 rows a step, 4 on each device.
    job = create_job(client, dataset, resources={"gpus": 4}, hyperparameters={"batch_size": 16})
    assert job["resources"] == {"gpu_type": None, "gpus": 4}


def test_no_gpu_types_configured_says_how_to_run_anyway(app, make_key) -> None:
    client = client_for(app, make_key("untyped"))
    r = client.post(
        "/jobs",
        json={
            "base_model": "tiny",
            "train_dataset": upload(client)["id"],
            "resources": {"gpu_type": "h100"},
        },
    )
    message = assert_error(r, 422, "validation_error")["message"]
    assert "EMBEDTUNE_GPU_TYPES is empty" in message and "leave gpu_type out" in message


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        ({"gpus": 0}, "resources.gpus"),
        ({"gpus": "2"}, "resources.gpus"),
        ({"gpus": 65}, "resources.gpus"),
        ({"gpu_type": "H100"}, "resources.gpu_type"),
        ({"gpu_type": "h100.x2"}, "resources.gpu_type"),
        ({"gpu_type": "any"}, "resources.gpu_type"),
        ({"gpu_type": 100}, "resources.gpu_type"),
        ({"cpus": 4}, "resources.cpus"),
    ],
)
def test_resources_of_the_wrong_shape_are_422_naming_the_field(
    app_with, make_key, resources: dict[str, Any], field: str
) -> None:
    client = client_for(app_with(**TYPES), make_key("shape"))
    body = {"base_model": "tiny", "train_dataset": upload(client)["id"], "resources": resources}
    error = assert_error(client.post("/jobs", json=body), 422, "validation_error")
    assert [d["field"] for d in error["details"]] == [field]


def test_position_counts_earlier_queued_jobs_of_the_same_queue_across_teams(
    app_with, make_key
) -> None:
    app = app_with(**TYPES)
    first, second = client_for(app, make_key("first")), client_for(app, make_key("second"))
    a, b = upload(first)["id"], upload(second)["id"]
    h100 = {"gpu_type": "h100"}
    jobs = [
        create_job(first, a, resources=h100),
        create_job(second, b, resources=h100),
        create_job(first, a),
        create_job(first, a, resources=h100),
        create_job(second, b, resources={"gpu_type": "a100"}),
    ]
    ids = [j["id"] for j in jobs]
    owner = [first, second, first, first, second]

    def places() -> list[tuple[str, int] | None]:
        out = []
        for job_id, client in zip(ids, owner, strict=True):
            queue = client.get(f"/jobs/{job_id}").json()["queue"]
            out.append((queue["name"], queue["position"]) if queue else None)
        return out

    h, d, t = f"{QUEUE}.h100", QUEUE, f"{QUEUE}.a100"
    assert [(j["queue"]["name"], j["queue"]["position"]) for j in jobs] == [
        (h, 1),
        (h, 2),
        (d, 1),
        (h, 3),
        (t, 1),
    ]
    assert places() == [(h, 1), (h, 2), (d, 1), (h, 3), (t, 1)]

    # The first one starts (a worker claimed it): it has no place any more, the others move up.
    with unit_of_work() as session:
        session.execute(update(Job).where(Job.id == ids[0]).values(status="running"))
    assert places() == [None, (h, 1), (d, 1), (h, 2), (t, 1)]
    # A cancelled one leaves its queue too.
    assert second.post(f"/jobs/{ids[1]}/cancel").json()["queue"] is None
    assert places() == [None, None, (d, 1), (h, 1), (t, 1)]

    # The list shows the same places as the single reads.
    listed = {j["id"]: j["queue"] for j in first.get("/jobs").json()["data"]}
    assert listed[ids[3]]["position"] == 1 and listed[ids[2]]["position"] == 1
    assert listed[ids[0]] is None


def test_created_at_ties_are_broken_by_id(app, make_key) -> None:
    client = client_for(app, make_key("ties"))
    dataset = upload(client)["id"]
    ids = [create_job(client, dataset)["id"] for _ in range(3)]
    with unit_of_work() as session:
        session.execute(update(Job).where(Job.id.in_(ids)).values(created_at=utcnow()))
    positions = {i: client.get(f"/jobs/{i}").json()["queue"]["position"] for i in ids}
    assert [positions[i] for i in sorted(ids)] == [1, 2, 3]


def test_live_workers_of_the_queue_are_counted_and_the_message_goes(app_with, make_key) -> None:
    client = client_for(app_with(**TYPES), make_key("workers"))
    dataset = upload(client)["id"]
    job = create_job(client, dataset, resources={"gpu_type": "h100", "gpus": 2})

    def queue() -> dict[str, Any]:
        return dict(client.get(f"/jobs/{job['id']}").json()["queue"])

    # Workers that cannot run it do not count: another type, too few devices, no type.
    beat("a100@host", "a100", 4)
    beat("small@host", "h100", 1)
    beat("untyped@host", None, 8)
    assert queue()["workers"] == 0 and "gpu_type 'h100' with 2 GPUs" in queue()["message"]

    beat("h100-a@host", "h100", 2)
    beat("h100-b@host", "h100", 4)
    assert queue() == {"name": f"{QUEUE}.h100.x2", "position": 1, "workers": 2, "message": None}

    # A worker silent for three heartbeats no longer counts.
    with unit_of_work() as session:
        session.execute(
            update(WorkerHeartbeat)
            .where(WorkerHeartbeat.node.in_(["h100-a@host", "h100-b@host"]))
            .values(last_seen_at=utcnow() - timedelta(seconds=31))
        )
    assert queue()["workers"] == 0 and queue()["message"] is not None


@pytest.fixture
def statements() -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn, cursor, statement, *_: Any) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def test_listing_jobs_costs_the_same_queries_for_one_job_as_for_many(
    app, make_key, statements: list[str]
) -> None:
    client = client_for(app, make_key("list"))
    dataset = upload(client)["id"]
    create_job(client, dataset)
    statements.clear()
    assert len(client.get("/jobs").json()["data"]) == 1
    one = len(statements)
    for _ in range(5):
        create_job(client, dataset)
    statements.clear()
    page = client.get("/jobs").json()["data"]
    assert len(statements) == one
    # Newest first; the oldest is next in the queue.
    assert [j["queue"]["position"] for j in page] == [6, 5, 4, 3, 2, 1]


def test_health_shows_workers_per_type_and_is_degraded_while_a_typed_queue_has_none(
    app_with, make_key
) -> None:
    app = app_with(**TYPES)
    client = client_for(app, make_key("health"))
    beat("untyped@host", None, 1)
    create_job(client, upload(client)["id"])
    assert client_for(app).get("/health").json()["status"] == "ok"

    def health() -> Any:
        return client_for(app).get("/health")

    create_job(client, upload(client)["id"], resources={"gpu_type": "t4"})
    r = health_until(health, lambda r: r.json()["status"] != "ok")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "degraded"
    assert body["workers"]["queues"] == {QUEUE: 1, f"{QUEUE}.t4": 0}

    beat("t4@host", "t4", 2)
    body = health_until(health, lambda r: r.json()["workers"]["alive"] == 2).json()
    assert body["status"] == "ok"
    assert body["workers"]["alive"] == 2
    assert body["workers"]["queues"] == {
        QUEUE: 2,
        f"{QUEUE}.any.x2": 1,
        f"{QUEUE}.t4": 1,
        f"{QUEUE}.t4.x2": 1,
    }
    assert body["workers"]["gpu_types"] == {
        "any": {"workers": 1, "gpus": 1},
        "t4": {"workers": 1, "gpus": 2},
    }


def test_metrics_queue_depth_is_per_queue(app_with, make_key) -> None:
    client = client_for(app_with(**TYPES), make_key("depth"))
    dataset = upload(client)["id"]
    create_job(client, dataset)
    for _ in range(2):
        create_job(client, dataset, resources={"gpu_type": "h100", "gpus": 2})
    beat("h100@host", "h100", 2)
    scraped = scrape(client)
    assert value(scraped, "embedtune_queue_depth", queue=QUEUE) == 1
    assert value(scraped, "embedtune_queue_depth", queue=f"{QUEUE}.h100.x2") == 2
    assert value(scraped, "embedtune_workers_alive", queue=f"{QUEUE}.h100.x2") == 1
    assert value(scraped, "embedtune_workers_alive", queue=f"{QUEUE}.a100") is None
