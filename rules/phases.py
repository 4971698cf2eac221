"""A job's phases and the timings of a finished job, in one place.

The API shows them, the worker writes them and the pipeline reports them: all three import these
names, so a phase the pipeline reports is one the API documents.
"""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    """What a job is doing. A job that ended shows its terminal status as its phase instead."""

    QUEUED = "queued"
    LOADING_MODEL = "loading_model"
    LOADING_DATA = "loading_data"
    EVALUATING_BASE = "evaluating_base"
    TRAINING = "training"
    EVALUATING = "evaluating"
    SAVING = "saving"


# The phases a training run goes through, in order (queued comes before, the end after).
RUN_PHASES: tuple[Phase, ...] = (
    Phase.LOADING_MODEL,
    Phase.LOADING_DATA,
    Phase.EVALUATING_BASE,
    Phase.TRAINING,
    Phase.EVALUATING,
    Phase.SAVING,
)

# The keys of a finished job's `timings`, in seconds, in the order the phases happen.
TIMING_KEYS: tuple[str, ...] = (
    "queued_s",
    "loading_s",
    "evaluating_base_s",
    "training_s",
    "evaluating_s",
    "saving_s",
)
