"""Typed failures of a training run.

`code` is stable: it is stored on the job and shown to users.
"""


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


class TrainingStopped(Exception):
    """The run stopped before its last step because RunControl asked it to (not a failure)."""

    def __init__(self, reason: str, step: int, checkpoint: str | None) -> None:
        super().__init__(f"training stopped at step {step}: {reason}")
        self.reason = reason
        self.step = step
        self.checkpoint = checkpoint  # the checkpoint saved on the way out, if any
