"""Typed failures of a training run, and how a run stops early.

The failures and their stable codes live in rules.errors (the API raises some of them too) and
are re-exported here for the pipeline; stopping early is the worker's own business.
"""

from __future__ import annotations

from rules.errors import (
    DatasetInvalid,
    DatasetUnavailable,
    ModelNotFound,
    OutOfMemory,
    PrecisionUnsupported,
    TrainingError,
)


class TrainingStopped(Exception):
    """The run stopped before its last step because RunControl asked it to (not a failure)."""

    def __init__(self, reason: str, step: int, checkpoint: str | None) -> None:
        super().__init__(f"training stopped at step {step}: {reason}")
        self.reason = reason
        self.step = step
        self.checkpoint = checkpoint  # the checkpoint saved on the way out, if any


__all__ = [
    "DatasetInvalid",
    "DatasetUnavailable",
    "ModelNotFound",
    "OutOfMemory",
    "PrecisionUnsupported",
    "TrainingError",
    "TrainingStopped",
]
