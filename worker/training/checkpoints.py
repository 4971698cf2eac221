"""Resumable checkpoints: saving them on a cadence, stopping on request, finding the latest.

A checkpoint is the trainer's `checkpoint-<step>` folder (model, optimizer, scheduler, RNG and
trainer state). It counts only once COMPLETE_MARKER is written into it, after the trainer's
on_save: a worker killed while saving leaves a folder without it, which is never resumed from.

On several devices (worker.training.distributed) the ranks agree every step on whether to save
and to stop, all of them write their part of a checkpoint (each its own RNG state), and the main
rank marks it complete once every rank has.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from rules.checkpoints import COMPLETE_MARKER
from worker.training import distributed
from worker.training.spec import CheckpointPolicy, RunControl, StopReason

_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def checkpoint_step(path: Path) -> int | None:
    match = _CHECKPOINT.fullmatch(path.name)
    return int(match.group(1)) if match else None


def latest_complete(root: Path) -> Path | None:
    """The complete checkpoint with the highest step anywhere under `root` (one level of
    per-attempt folders deep), or None."""
    if not root.is_dir():
        return None
    best: tuple[int, float, Path] | None = None
    for marker in root.glob(f"*/checkpoint-*/{COMPLETE_MARKER}"):
        folder = marker.parent
        step = checkpoint_step(folder)
        if step is None:
            continue
        key = (step, marker.stat().st_mtime, folder)
        if best is None or key[:2] > best[:2]:
            best = key
    return best[2] if best else None


class CheckpointCallback(TrainerCallback):
    """Asks the trainer to save every `every_steps` steps and every `every_s` seconds, marks each
    saved checkpoint complete and tells the RunControl."""

    def __init__(self, policy: CheckpointPolicy, control: RunControl | None) -> None:
        self.policy = policy
        self.run_control = control
        self._last_save = time.monotonic()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        if state.global_step >= state.max_steps:
            return  # the finished model is saved as the result, not as a checkpoint
        every = self.policy.every_steps
        due = bool(every and state.global_step % every == 0) or (
            time.monotonic() - self._last_save >= self.policy.every_s
        )
        # Each rank has its own clock: they save when any of them finds a save due.
        if distributed.agree(due):
            control.should_save = True

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        self._last_save = time.monotonic()
        folder = Path(str(args.output_dir)) / f"checkpoint-{state.global_step}"
        distributed.barrier()  # every rank's part of the checkpoint is written
        if distributed.is_main() and folder.is_dir():
            (folder / COMPLETE_MARKER).write_text(str(state.global_step))
            if self.run_control is not None:
                self.run_control.checkpoint_saved(int(state.global_step), folder)


class StopCallback(TrainerCallback):
    """Stops training at the end of a step when the RunControl asks; before a hand-back it also
    asks for a checkpoint, so the next attempt continues from this very step."""

    def __init__(self, control: RunControl, can_checkpoint: bool) -> None:
        self.run_control = control
        self.can_checkpoint = can_checkpoint
        self.reason: StopReason | None = None
        self.step = 0

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        if self.reason is not None or state.global_step >= state.max_steps:
            return
        # Every rank stops at the same step, for the same reason.
        reason = distributed.agree_on_stop(self.run_control.stop_requested())
        if reason is None:
            return
        self.reason = reason
        self.step = int(state.global_step)
        control.should_training_stop = True
        # No evaluation or log on the way out: the next attempt repeats this step's work.
        control.should_evaluate = False
        if reason == "handed_back" and self.can_checkpoint:
            control.should_save = True
