"""Why a job failed: typed errors whose stable `code` is stored on the job and shown to users.

The worker raises them; the API raises some of them too when it can tell before a job is queued
(a base model that does not exist), so both sides use the same code for the same failure.
"""

from __future__ import annotations

import re


class TrainingError(Exception):
    code = "training_failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ModelNotFound(TrainingError):
    code = "model_not_found"


class DatasetUnavailable(TrainingError):
    code = "dataset_unavailable"


class DatasetInvalid(TrainingError):
    """The data loaded but cannot be trained or evaluated on (wrong columns, no rows...)."""

    code = "dataset_invalid"


class PrecisionUnsupported(TrainingError):
    """The requested precision cannot run on this device (fp16/bf16 on CPU, bf16 on an old GPU)."""

    code = "precision_unsupported"


class OutOfMemory(TrainingError):
    """The accelerator ran out of memory; a smaller batch_size or max_seq_length may fit."""

    code = "out_of_memory"


# Absolute filesystem paths inside an error message (not URLs such as https://host/path).
_PATH_RE = re.compile(r"(?<![\w:/.])/(?:[^\s'\"/,;:()]+/)*[^\s'\"/,;:()]*")


def short_reason(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, without server filesystem paths, shortened:
    what a library's error may say to a user."""
    text = str(exc).strip() or type(exc).__name__
    line = text.splitlines()[0].strip()
    line = _PATH_RE.sub("<path>", line)
    if len(line) > limit:
        line = line[: limit - 3].rstrip() + "..."
    return line


__all__ = [
    "DatasetInvalid",
    "DatasetUnavailable",
    "ModelNotFound",
    "OutOfMemory",
    "PrecisionUnsupported",
    "TrainingError",
    "short_reason",
]
