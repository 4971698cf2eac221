"""Which Celery queue a job waits in, and which queues a worker takes jobs from.

A job asks for hardware (a GPU type or any, and a device count); each combination is one queue,
so the broker only ever hands a job to a worker that can run it:

    {base}              any type, 1 device (the one queue of every job before routing existed)
    {base}.{type}       type T, 1 device
    {base}.any.x{N}     any type, N > 1 devices
    {base}.{type}.x{N}  type T, N > 1 devices

A worker of type T with G devices consumes every any-type queue and every type-T queue for 1..G
devices; a worker without a type consumes only the any-type ones. So a job without a type runs
on any worker with enough devices, and a typed job only on a worker of its type.

Torch-free and small: the API (naming a job's queue) and the worker (choosing its queues) both
import it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GPU_TYPE_MAX_LENGTH = 64
# Lowercase so `H100` and `h100` cannot become two queues; no dots, which separate the parts of
# a queue name.
GPU_TYPE_PATTERN = r"[a-z0-9][a-z0-9_-]{0,63}"
_GPU_TYPE = re.compile(GPU_TYPE_PATTERN)
# `any` names the any-type queues: a type called so would share them.
ANY_TYPE = "any"
# The most devices a job or a worker may name (no machine has more); settings can only lower it.
GPUS_CAP = 64


def check_gpu_type(name: str) -> str:
    """`name` if it is a usable GPU type name, else ValueError saying why."""
    if not _GPU_TYPE.fullmatch(name):
        raise ValueError(
            f"GPU type {name!r}: lowercase letters, digits, '-' and '_', starting with a letter "
            f"or digit, at most {GPU_TYPE_MAX_LENGTH} characters"
        )
    if name == ANY_TYPE:
        raise ValueError(f"GPU type {ANY_TYPE!r} is reserved: leave the type out to mean any")
    return name


@dataclass(frozen=True)
class Resources:
    """What a job asks for: a GPU type (None: any) and how many devices of one worker."""

    gpu_type: str | None = None
    gpus: int = 1

    @classmethod
    def of(cls, stored: Mapping[str, Any] | None) -> Resources:
        """The resources recorded on a job row; None (jobs from before routing) is the default."""
        if not stored:
            return cls()
        return cls(gpu_type=stored.get("gpu_type"), gpus=int(stored.get("gpus") or 1))

    def as_json(self) -> dict[str, Any]:
        return {"gpu_type": self.gpu_type, "gpus": self.gpus}

    def describe(self) -> str:
        """For people: "gpu_type 'h100' with 2 GPUs", "any gpu_type with 1 GPU"."""
        kind = f"gpu_type {self.gpu_type!r}" if self.gpu_type else "any gpu_type"
        return f"{kind} with {self.gpus} GPU{'s' if self.gpus != 1 else ''}"


def queue_for(resources: Resources, base: str) -> str:
    """The queue a job asking for `resources` is sent to, under the deployment's queue `base`."""
    return _queue(base, resources.gpu_type, resources.gpus)


def queues_for_worker(gpu_type: str | None, gpus: int, base: str) -> list[str]:
    """Every queue a worker of `gpu_type` (None: untyped) with `gpus` devices consumes: the
    any-type queues for 1..gpus devices, then its own type's."""
    if gpus < 1:
        raise ValueError(f"a worker has at least 1 device, got {gpus}")
    types: list[str | None] = [None] if gpu_type is None else [None, check_gpu_type(gpu_type)]
    return [_queue(base, t, n) for t in types for n in range(1, gpus + 1)]


def _queue(base: str, gpu_type: str | None, gpus: int) -> str:
    if gpus == 1:
        return f"{base}.{gpu_type}" if gpu_type else base
    return f"{base}.{gpu_type or ANY_TYPE}.x{gpus}"
