"""How a job's global batch splits over its devices: the API refuses a job that cannot split
(422 before it is queued), the worker applies the same rule when it trains."""

from __future__ import annotations

from rules.errors import TrainingError


class BatchSizeNotDivisible(TrainingError):
    """batch_size is the global batch: it must split evenly over the run's devices."""

    code = "batch_size_not_divisible"


def per_device_batch_size(batch_size: int, devices: int) -> int:
    """The rows each device trains on per step: batch_size / devices, which must be whole."""
    if devices < 1:
        raise ValueError(f"a run has at least 1 device, got {devices}")
    if batch_size % devices:
        raise BatchSizeNotDivisible(
            f"batch_size {batch_size} does not split evenly over {devices} devices: use a "
            f"multiple of {devices} (batch_size is the global batch, each device gets "
            "batch_size / gpus rows)."
        )
    return batch_size // devices
