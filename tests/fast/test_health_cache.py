"""GET /health answers from its last checks for EMBEDTUNE_HEALTH_CACHE_S seconds, and the
requests that find that answer stale share one run of the checks (single flight)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from app import health as health_module
from app.db.session import unit_of_work
from app.health import HealthCache
from app.workers import service as workers
from tests.fast.conftest import client_for

QUEUE = "fast-tests"  # the queue tests/fast/conftest.py gives the app


def test_the_answer_is_reused_within_the_ttl_and_the_broker_probed_once(
    app_with, monkeypatch: pytest.MonkeyPatch
) -> None:
    probes: list[bool] = []
    real_probe = health_module.broker_reachable

    def counted() -> bool:
        probes.append(real_probe())
        return probes[-1]

    monkeypatch.setattr(health_module, "broker_reachable", counted)
    app = app_with(HEALTH_CACHE_S="30")
    client = client_for(app)
    first = client.get("/health")
    assert first.status_code == 200 and first.json()["workers"]["alive"] == 0
    with unit_of_work() as session:
        workers.beat(session, "new@host", QUEUE, 1)
    answers = [client.get("/health") for _ in range(50)]
    # Within the TTL: the same answer, the worker not yet counted, one broker probe in all.
    assert {r.content for r in answers} == {first.content}
    assert probes == [True]


def test_without_a_ttl_every_request_checks(app_with) -> None:
    client = client_for(app_with(HEALTH_CACHE_S="0"))
    assert client.get("/health").json()["workers"]["alive"] == 0
    with unit_of_work() as session:
        workers.beat(session, "new@host", QUEUE, 1)
    assert client.get("/health").json()["workers"]["alive"] == 1


def test_concurrent_requests_share_one_run_of_the_checks(
    app, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[int] = []
    release = threading.Event()
    real_check = health_module.check

    def gated() -> Any:
        runs.append(1)
        release.wait(30)
        return real_check()

    monkeypatch.setattr(health_module, "check", gated)
    cache = HealthCache(ttl_s=0)  # every request finds the answer stale

    async def many() -> list[Any]:
        waiting = [asyncio.ensure_future(cache.get()) for _ in range(20)]
        # One turn of the loop: each task runs up to its wait for the checks.
        await asyncio.sleep(0)
        assert not any(task.done() for task in waiting)
        release.set()
        return await asyncio.gather(*waiting)

    answers = asyncio.run(many())
    assert runs == [1]
    assert len({id(a) for a in answers}) == 1
    assert answers[0].status_code == 200
    # The next stale request runs the checks again.
    assert asyncio.run(cache.get()) is not answers[0] and runs == [1, 1]
