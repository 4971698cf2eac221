"""Where a run's time goes: the phase it is in, told to a PhaseReporter, and seconds per phase.

The run moves through rules.phases.RUN_PHASES in order and reports each when it starts. The
evaluations during training are not reported (the run is still training, and a job's phase
should not flicker at every evaluation) but their time is moved from training to evaluating,
or to evaluating_base for the evaluation the trainer runs before the first step.
"""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from rules.phases import RUN_PHASES, Phase
from worker.training.spec import PhaseReporter


class PhaseClock:
    """Seconds per run phase (time.monotonic), told to `report` as each phase starts."""

    def __init__(self, report: PhaseReporter | None = None) -> None:
        self._report = report
        self._current: Phase | None = None
        self._since = 0.0
        self.seconds: dict[str, float] = {phase.value: 0.0 for phase in RUN_PHASES}

    @property
    def current(self) -> Phase | None:
        return self._current

    def enter(self, phase: Phase) -> None:
        """End the current phase and start `phase` (reported)."""
        now = time.monotonic()
        self._close(now)
        self._current = phase
        self._since = now
        if self._report is not None:
            self._report(phase)

    def move(self, seconds: float, source: Phase, target: Phase) -> None:
        """Count `seconds` the run spent in `source` (the current phase) as `target`'s."""
        self._close(time.monotonic())
        moved = min(max(seconds, 0.0), self.seconds[source.value])
        self.seconds[source.value] -= moved
        self.seconds[target.value] += moved

    def stop(self) -> dict[str, float]:
        """End the current phase; the seconds of every run phase."""
        self._close(time.monotonic())
        self._current = None
        return dict(self.seconds)

    def _close(self, now: float) -> None:
        if self._current is not None:
            self.seconds[self._current.value] += now - self._since
            self._since = now


class EvaluationTimer(TrainerCallback):
    """Moves the time of the trainer's evaluations out of training.

    The trainer evaluates after a step's on_step_end and training-loss log (and once after
    on_train_begin with eval_on_start); what passed since the last of those when on_evaluate
    comes is the evaluation's. Add it last, so the other callbacks' work at those points counts
    as training.
    """

    def __init__(self, clock: PhaseClock) -> None:
        self.clock = clock
        self._mark = time.monotonic()

    def _set_mark(self) -> None:
        self._mark = time.monotonic()

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._set_mark()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._set_mark()

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        # Only a step's training loss: an evaluation logs its own metrics just before
        # on_evaluate, and that time is the evaluation's.
        if logs and "loss" in logs:
            self._set_mark()

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # Before the first step, the evaluation is the base model's (eval_on_start).
        target = Phase.EVALUATING_BASE if state.global_step == 0 else Phase.EVALUATING
        self.clock.move(time.monotonic() - self._mark, Phase.TRAINING, target)
        self._set_mark()
