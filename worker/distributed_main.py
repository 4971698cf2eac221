"""One rank of a run on several devices: `python -m worker.distributed_main FOLDER`, started by
torchrun (worker.launch), runs the pure pipeline on the spec in FOLDER (worker.run_folder).

The ranks never touch the database or the store: the main rank reports progress, phases, metric
points and saved checkpoints as events in FOLDER, which the parent (it holds the attempt) persists.
A checkpoint event waits until the parent has recorded it, as the in-process call does: the trainer
deletes a checkpoint two saves later, and recording it may mean uploading it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

from rules.phases import Phase
from worker.run_folder import (
    PARENT_PID_ENV,
    CheckpointEvent,
    Outcome,
    PhaseEvent,
    RunFolder,
    parent_alive,
)
from worker.training.errors import TrainingError, TrainingStopped
from worker.training.spec import MetricPoint, Progress, StopReason

log = logging.getLogger("worker.distributed_main")

# How often the main rank reports progress (the parent throttles its own writes further).
PROGRESS_EVENT_S = 0.5


class RankControl:
    """A rank's RunControl: stops when the parent asks (the stop file), or when the parent is
    gone (nobody holds the attempt any more: as a lost lease)."""

    def __init__(self, folder: RunFolder, parent_pid: int) -> None:
        self.folder = folder
        self.parent_pid = parent_pid

    def _parent_alive(self) -> bool:
        return parent_alive(self.parent_pid)

    def stop_requested(self) -> StopReason | None:
        if not self._parent_alive():
            return "lease_lost"
        return self.folder.stop_reason()

    def checkpoint_saved(self, step: int, path: Path) -> None:
        self.folder.append_event(CheckpointEvent(step, path))
        self.folder.wait_for_acknowledgement(step, self._parent_alive)


class EventReporter:
    """The main rank's ProgressReporter, PhaseReporter and MetricsRecorder, as events: progress
    at most every PROGRESS_EVENT_S (`flush` at the end sends the last one), every phase and
    every metric point."""

    def __init__(self, folder: RunFolder) -> None:
        self.folder = folder
        self._pending: Progress | None = None
        self._last = 0.0

    def progress(self, progress: Progress) -> None:
        self._pending = progress
        if time.monotonic() - self._last >= PROGRESS_EVENT_S:
            self.flush()

    def point(self, point: MetricPoint) -> None:
        self.folder.append_event(point)

    def phase(self, phase: Phase) -> None:
        self.flush()  # the progress of the phase that ends comes before it
        self.folder.append_event(PhaseEvent(phase.value))

    def flush(self) -> None:
        if self._pending is not None:
            self.folder.append_event(self._pending)
            self._pending = None
            self._last = time.monotonic()


def _die_with_parent() -> None:
    """Have Linux kill this rank when its parent, the launcher, dies."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _join_process_group() -> None:
    """NCCL with one GPU per rank on CUDA, gloo on CPU."""
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():
        # "cuda" without an index now means this rank's GPU, for the model and the trainer.
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")


def run_rank(folder: RunFolder, rank: int) -> Outcome:
    """This rank's part of the run, as an Outcome (a failed run is one too)."""
    from worker.training.pipeline import run

    spec = folder.read_spec()
    # Scratch space of its own: ranks must not build the same files at the same time.
    spec = replace(spec, work_dir=Path(spec.work_dir) / f"rank-{rank}")
    reporter = EventReporter(folder)
    control = RankControl(folder, int(os.environ[PARENT_PID_ENV]))
    try:
        return Outcome(
            result=run(spec, reporter.progress, reporter.point, control, phases=reporter.phase)
        )
    except TrainingStopped as stop:
        return Outcome(stopped=(stop.reason, stop.step, stop.checkpoint))
    except TrainingError as exc:
        log.warning("rank %d failed: %s: %s", rank, exc.code, exc.message)
        return Outcome(error=exc)
    finally:
        reporter.flush()


def main(argv: list[str]) -> int:
    rank = int(os.environ["RANK"])
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s rank {rank} %(levelname)s %(name)s: %(message)s"
    )
    _die_with_parent()
    # sentence-transformers gathers embeddings with a torch function that torch marks
    # deprecated, and the warning comes at every step: noise in the worker log.
    warnings.filterwarnings(
        "ignore", message=r"torch\.distributed\.nn\.functional\.all_gather is deprecated"
    )
    folder = RunFolder(Path(argv[0]))
    try:
        _join_process_group()
        outcome = run_rank(folder, rank)
    except Exception as exc:
        log.exception("rank %d failed", rank)
        outcome = Outcome(error=exc)
    folder.write_outcome(rank, outcome)
    if outcome.error is not None:
        # Non-zero: the launcher then ends the ranks that wait for this one in a collective.
        return 1
    import torch.distributed as dist

    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
