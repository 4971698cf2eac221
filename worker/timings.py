"""Where a successful attempt's time went: the `timings` the job row and the model card show.

The pipeline measures its own phases (worker.training.phases); this adds what happens around
it in the worker: the wait in the queue before, fetching the data and starting the training
processes (counted as loading), and packing and storing the model after (counted as saving).
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import func, select

from app.db.session import unit_of_work
from app.jobs.events import EventType
from app.jobs.models import JobEvent
from rules.phases import TIMING_KEYS, Phase
from worker.training.card import add_timings
from worker.training.spec import TrainingResult

log = logging.getLogger(__name__)


def queued_seconds(job_id: str, attempt: int) -> float:
    """How long attempt `attempt` waited: from the job entering the queue (its creation, or the
    hand-back or loss of the attempt before) to the claim, from the job's timeline. 0 when the
    timeline lacks either, the API's and the worker's clocks disagree the other way, or the
    database cannot say (a figure must not fail a job that trained)."""
    try:
        return _queued_seconds(job_id, attempt)
    except Exception:
        log.warning("could not read how long job %s waited", job_id, exc_info=True)
        return 0.0


def _queued_seconds(job_id: str, attempt: int) -> float:
    with unit_of_work() as session:
        started = session.execute(
            select(JobEvent.id, JobEvent.created_at)
            .where(
                JobEvent.job_id == job_id,
                JobEvent.type == EventType.STARTED.value,
                JobEvent.attempt == attempt,
            )
            .order_by(JobEvent.id.desc())
            .limit(1)
        ).first()
        if started is None:
            return 0.0
        entered = session.scalar(
            select(func.max(JobEvent.created_at)).where(
                JobEvent.job_id == job_id,
                JobEvent.type.in_([EventType.QUEUED.value, EventType.RETRIED.value]),
                JobEvent.id < started.id,
            )
        )
    if entered is None:
        return 0.0
    return max(0.0, (started.created_at - entered).total_seconds())


def attempt_timings(
    result: TrainingResult, *, queued_s: float, run_s: float, after_s: float
) -> dict[str, float]:
    """TIMING_KEYS -> seconds, rounded to milliseconds.

    `run_s`: from the claim until the training run returned (what the pipeline did not measure
    in it, such as fetching the datasets or starting the processes of a run on several devices,
    is loading); `after_s`: from then until the model is stored (saving).
    """
    inside = result.timings
    unmeasured = max(0.0, run_s - sum(inside.values()))
    seconds = {
        "queued_s": queued_s,
        "loading_s": inside.get(Phase.LOADING_MODEL.value, 0.0)
        + inside.get(Phase.LOADING_DATA.value, 0.0)
        + unmeasured,
        "evaluating_base_s": inside.get(Phase.EVALUATING_BASE.value, 0.0),
        "training_s": inside.get(Phase.TRAINING.value, 0.0),
        "evaluating_s": inside.get(Phase.EVALUATING.value, 0.0),
        "saving_s": inside.get(Phase.SAVING.value, 0.0) + max(0.0, after_s),
    }
    return {key: round(seconds[key], 3) for key in TIMING_KEYS}


def throughput(result: TrainingResult, training_s: float) -> float | None:
    """Training samples per second: the rows of the steps this attempt trained over its
    training time; None when it trained no step."""
    samples = result.trained_steps * result.batch_size
    if samples <= 0 or training_s <= 0:
        return None
    return round(samples / training_s, 2)


def job_timings(
    result: TrainingResult, *, queued_s: float, run_s: float, after_s: float
) -> dict[str, float | None]:
    """The job row's `timings`: attempt_timings and "throughput"."""
    timings: dict[str, float | None] = dict(
        attempt_timings(result, queued_s=queued_s, run_s=run_s, after_s=after_s)
    )
    timings["throughput"] = throughput(result, timings["training_s"] or 0.0)
    return timings


def add_card_timings(
    model_dir: Path, result: TrainingResult, *, queued_s: float, run_s: float
) -> None:
    """The figures known before the model is packed, in its card (saving: the model folder)."""
    timings = attempt_timings(result, queued_s=queued_s, run_s=run_s, after_s=0.0)
    add_timings(model_dir, timings, throughput(result, timings["training_s"]))
