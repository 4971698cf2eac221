"""The worker's MetricPointWriter: idempotent inserts on PostgreSQL and SQLite, throttled train
points, eval points at once, and database failures that never reach the training run."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app import migrations
from app.auth.models import Team
from app.db.session import make_engine
from app.jobs.models import Job, JobMetricPoint
from worker.metrics import MetricPointWriter
from worker.training.spec import MetricPoint

JOB = "job_metrics_writer"


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'points.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    migrations.upgrade(url)
    engine = make_engine(url, pooled=False)
    with Session(engine) as session:
        session.add(Team(id="team_t", name="t"))
        session.add(
            Job(
                id=JOB,
                team_id="team_t",
                status="running",
                base_model="m",
                train_dataset="ds_x",
                loss="mnr",
                hyperparameters={},
                metadata_={},
                attempt=1,
            )
        )
        session.commit()
    yield engine
    engine.dispose()


def scope_for(engine: Engine):
    @contextmanager
    def scope() -> Iterator[Session]:
        with Session(engine) as session:
            yield session
            session.commit()

    return scope


def stored(engine: Engine) -> list[tuple[str, int, float, dict]]:
    with Session(engine) as session:
        rows = session.scalars(
            select(JobMetricPoint)
            .where(JobMetricPoint.job_id == JOB)
            .order_by(JobMetricPoint.kind, JobMetricPoint.step)
        )
        return [(r.kind, r.step, r.epoch, r.values) for r in rows]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def train(step: int, loss: float = 1.0) -> MetricPoint:
    return MetricPoint("train", step, step / 10, {"loss": loss, "learning_rate": 1e-5})


def test_train_points_are_throttled_and_eval_points_written_at_once(engine: Engine) -> None:
    clock = Clock()
    writer = MetricPointWriter(JOB, 1.0, session_scope=scope_for(engine), clock=clock)
    writer(train(1))  # the first point is written at once
    assert [s[1] for s in stored(engine)] == [1] and writer.pending == 0
    clock.now += 0.3
    writer(train(2))
    clock.now += 0.3
    writer(train(3))
    assert [s[1] for s in stored(engine)] == [1] and writer.pending == 2
    writer(MetricPoint("eval", 3, 0.3, {"loss": 2.0, "cosine_accuracy": 0.5}))
    assert writer.pending == 0
    assert [(s[0], s[1]) for s in stored(engine)] == [
        ("eval", 3),
        ("train", 1),
        ("train", 2),
        ("train", 3),
    ]
    clock.now += 0.5
    writer(train(4))  # within the interval of the last write
    assert writer.pending == 1
    clock.now += 1.0
    writer(train(5))  # past it
    assert writer.pending == 0 and len(stored(engine)) == 6
    writer(train(6))
    writer.flush()  # the final flush
    assert [s[1] for s in stored(engine) if s[0] == "train"] == [1, 2, 3, 4, 5, 6]
    assert stored(engine)[0] == ("eval", 3, 0.3, {"loss": 2.0, "cosine_accuracy": 0.5})


def test_a_retried_attempt_resending_a_step_changes_nothing(engine: Engine) -> None:
    first = MetricPointWriter(JOB, 0.0, session_scope=scope_for(engine))
    for step in (1, 2, 3):
        first(train(step, loss=float(step)))
    first(MetricPoint("eval", 0, 0.0, {"loss": 9.0}))
    before = stored(engine)

    again = MetricPointWriter(JOB, 60.0, session_scope=scope_for(engine))
    again(MetricPoint("eval", 0, 0.0, {"loss": 1.0}))  # same key, other value
    for step in (2, 3, 4):
        again(train(step, loss=100.0))
    again(train(4, loss=200.0))  # the same step twice in one batch
    assert again.flush()
    after = stored(engine)
    assert after[: len(before)] == before  # the first report of a step stays
    # Within one write, the last report of a step is the one inserted.
    assert after[-1] == ("train", 4, 0.4, {"loss": 200.0, "learning_rate": 1e-5})
    assert len(after) == len(before) + 1


def test_non_finite_values_are_stored_as_null(engine: Engine) -> None:
    writer = MetricPointWriter(JOB, 0.0, session_scope=scope_for(engine))
    writer(MetricPoint("train", 1, 0.1, {"loss": float("nan"), "grad_norm": float("inf")}))
    assert stored(engine) == [("train", 1, 0.1, {"loss": None, "grad_norm": None})]


def test_a_database_failure_is_logged_and_retried_not_raised(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    working = scope_for(engine)
    broken = {"on": True}

    @contextmanager
    def flaky() -> Iterator[Session]:
        if broken["on"]:
            raise OperationalError("INSERT", {}, Exception("connection refused"))
        with working() as session:
            yield session

    writer = MetricPointWriter(JOB, 0.0, session_scope=flaky)
    with caplog.at_level(logging.WARNING, logger="worker.metrics"):
        writer(train(1))  # does not raise
        writer(MetricPoint("eval", 1, 0.1, {"loss": 1.0}))
    assert writer.failed_writes == 2 and writer.pending == 2
    assert "could not record 2 metric point(s)" in caplog.text
    assert stored(engine) == []
    broken["on"] = False
    writer(train(2))
    assert writer.pending == 0
    assert [(s[0], s[1]) for s in stored(engine)] == [("eval", 1), ("train", 1), ("train", 2)]
