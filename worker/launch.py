"""Run a job's training on its devices: one in this process, several as a distributed run.

A run on N > 1 devices is N rank processes (worker.distributed_main) started through torchrun,
because the Celery pool process that runs a job is daemonic and may not have multiprocessing
children. This process keeps the attempt: it passes stop requests down to the ranks, persists what
the main rank reports (progress, phases, metric points, checkpoints) through the same reporters and
RunControl an in-process run calls, and turns the ranks' outcome back into what the in-process
run returns or raises: a TrainingResult (with the main rank's phase timings), TrainingStopped or
the same TrainingError.

The launcher runs in a session of its own (a signal to the worker's process group must reach the
attempt, which stops the ranks at a step with a checkpoint, not the ranks themselves) and dies
with this process, and its ranks with it.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import worker
from rules.devices import per_device_batch_size
from rules.phases import Phase
from worker.run_folder import PARENT_PID_ENV, CheckpointEvent, Outcome, PhaseEvent, RunFolder
from worker.training.distributed import check_devices
from worker.training.errors import TrainingError, TrainingStopped
from worker.training.spec import (
    MetricPoint,
    MetricsRecorder,
    PhaseReporter,
    Progress,
    ProgressReporter,
    RunControl,
    StopReason,
    TrainingResult,
    TrainingSpec,
)

log = logging.getLogger(__name__)

# How often the parent looks for stop requests and the main rank's events.
POLL_S = 0.2
# How long the launcher may take to end its ranks when told to, before it is killed.
TERMINATE_GRACE_S = 30.0
RUN_FOLDER = "ddp"


def run_training(
    spec: TrainingSpec,
    writer: ProgressReporter,
    points: MetricsRecorder | None,
    control: RunControl | None,
    *,
    devices: int,
    job_id: str,
    attempt: int,
    work_dir: Path,
    phases: PhaseReporter | None = None,
) -> TrainingResult:
    """Train `spec` on `devices` devices: what worker.training.pipeline.run returns or raises.

    devices 1 runs the pipeline in this process. More run it data-parallel (one rank per GPU
    with NCCL, or that many CPU processes with gloo on a machine without CUDA); the ranks share
    the folder `work_dir`/ddp with this process.
    """
    if devices <= 1:
        from worker.training.pipeline import run

        return run(spec, writer, record=points, control=control, phases=phases)
    per_device_batch_size(spec.hyperparameters.batch_size, devices)
    check_devices(devices)
    folder = RunFolder(Path(work_dir) / RUN_FOLDER)
    shutil.rmtree(folder.root, ignore_errors=True)
    folder.write_spec(spec)
    log.info("job %s attempt %d: training on %d devices", job_id, attempt, devices)
    launcher = _start(folder, devices)
    try:
        _supervise(launcher, folder, writer, points, control, phases)
    finally:
        _end(launcher)
    return _result(folder.outcomes(), launcher.returncode, devices)


def _start(folder: RunFolder, devices: int) -> subprocess.Popen[bytes]:
    import torch

    env = dict(os.environ)
    env[PARENT_PID_ENV] = str(os.getpid())
    # The ranks import this package however this process found it.
    root = str(Path(worker.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    if not torch.cuda.is_available() and "OMP_NUM_THREADS" not in env:
        # torchrun would give each rank 1 thread; CPU ranks share this machine's cores.
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        env["OMP_NUM_THREADS"] = str(max(1, (cpus or 1) // devices))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={devices}",
        "--max-restarts=0",
        "-m",
        "worker.distributed_main",
        str(folder.root),
    ]
    return subprocess.Popen(
        command,
        env=env,
        start_new_session=True,
        # Runs between fork and exec, with threads about (the lease): it only calls prctl.
        preexec_fn=_die_with_parent_hook(),
    )


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec_fn that has Linux kill the launcher when this process dies (a SIGKILLed
    worker must not leave ranks training)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the child only calls it
    parent = os.getpid()

    def hook() -> None:
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)

    return hook


def _supervise(
    launcher: subprocess.Popen[bytes],
    folder: RunFolder,
    writer: ProgressReporter,
    points: MetricsRecorder | None,
    control: RunControl | None,
    phases: PhaseReporter | None = None,
) -> None:
    """Until the launcher exits: pass stop requests down, persist the main rank's events."""
    offset = 0
    asked: StopReason | None = None
    while True:
        ended = launcher.poll() is not None
        reason = control.stop_requested() if control is not None else None
        if reason is not None and reason != asked:
            folder.request_stop(reason)
            asked = reason
        events, offset = folder.read_events(offset)
        for event in events:
            if isinstance(event, Progress):
                writer(event)
            elif isinstance(event, PhaseEvent):
                if phases is not None:
                    phases(Phase(event.phase))
            elif isinstance(event, MetricPoint):
                if points is not None:
                    points(event)
            elif isinstance(event, CheckpointEvent):
                if control is not None:
                    control.checkpoint_saved(event.step, event.path)
                folder.acknowledge_checkpoint(event.step)
        if ended:
            return
        time.sleep(POLL_S)


def _end(launcher: subprocess.Popen[bytes]) -> None:
    """Make sure the launcher and its ranks are gone (they are, unless this process failed)."""
    if launcher.poll() is not None:
        return
    launcher.terminate()  # torchrun ends its ranks, then exits
    try:
        launcher.wait(TERMINATE_GRACE_S)
    except subprocess.TimeoutExpired:
        launcher.kill()  # the ranks die with it (their parent-death signal)
        launcher.wait()


def _result(outcomes: dict[int, Outcome], returncode: int | None, devices: int) -> TrainingResult:
    """The run's result from its ranks' outcomes: the main rank's result or stop; else the
    error of a rank, a TrainingError (what a user can fix) before any other."""
    main = outcomes.get(0)
    if main is not None and main.result is not None:
        return main.result
    if main is not None and main.stopped is not None:
        raise TrainingStopped(*main.stopped)
    errors = [o.error for _, o in sorted(outcomes.items()) if o.error is not None]
    for error in errors:
        if isinstance(error, TrainingError):
            raise error
    if errors:
        raise errors[0]
    raise RuntimeError(
        f"the {devices} training processes ended without a result (launcher exit code "
        f"{returncode}); the worker log has their output"
    )
