"""transformers TrainerCallbacks: one tells a ProgressReporter how training is going, one turns
logs and evaluations into MetricPoints for a MetricsRecorder, and one keeps evaluations during
training within a share of the training time."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from worker.training import distributed
from worker.training.spec import (
    METRIC_KEYS,
    MetricPoint,
    MetricsRecorder,
    Progress,
    ProgressReporter,
)


class ProgressCallback(TrainerCallback):
    """Reports Progress(step, total_steps, epoch, latest logged training loss).

    Called when training begins, at every step end, and again when the trainer logs a training
    loss (so the loss of a logging step is reported at that same step). Throttling is the
    reporter's job.
    """

    def __init__(self, report: ProgressReporter) -> None:
        self.report = report
        self.last_loss: float | None = None

    def _report(self, state: TrainerState) -> None:
        self.report(
            Progress(
                step=int(state.global_step),
                total_steps=int(state.max_steps),
                epoch=float(state.epoch or 0.0),
                loss=self.last_loss,
            )
        )

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        # The steps to run (and a resumed run's step) are known now: show them before the
        # first step, which may be long after (the evaluation before training, a slow step).
        self._report(state)

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        self._report(state)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        # The end-of-training summary logs "train_loss" (an average), not "loss": only a step's
        # logged training loss counts as the latest loss.
        if logs and "loss" in logs:
            self.last_loss = float(logs["loss"])
            self._report(state)


def finite(value: Any) -> float | None:
    """`value` as a float, or None when it is missing, not a number, NaN or infinite."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class MetricsCallback(TrainerCallback):
    """Turns the trainer's logs and evaluations into MetricPoints for a MetricsRecorder.

    `on_log` with a step's training loss gives a "train" point (loss, learning_rate, grad_norm);
    `on_evaluate` gives an "eval" point (loss on the eval set, and the accuracies of the
    evaluator named `evaluator_name`, when there is one). It also asks the trainer to log the
    last step, so the series ends where training ended.
    """

    def __init__(self, record: MetricsRecorder, evaluator_name: str | None) -> None:
        self.record = record
        self.evaluator_name = evaluator_name

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        if state.max_steps and state.global_step >= state.max_steps:
            control.should_log = True

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        # Evaluation logs have "eval_loss", the end-of-training summary "train_loss": neither
        # is a step's training loss.
        if not logs or "loss" not in logs:
            return
        values: dict[str, float | None] = {
            "loss": finite(logs["loss"]),
            "learning_rate": finite(logs.get("learning_rate")),
        }
        if "grad_norm" in logs:
            values["grad_norm"] = finite(logs["grad_norm"])
        self.record(
            MetricPoint(
                kind="train",
                step=int(state.global_step),
                epoch=float(state.epoch or 0.0),
                values=values,
            )
        )

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        metrics = metrics or {}
        values: dict[str, float | None] = {"loss": finite(metrics.get("eval_loss"))}
        if self.evaluator_name is not None:
            # The trainer prefixes the evaluator's `{name}_...` keys with "eval_", unless they
            # already start with it (an evaluator named "eval").
            own = f"{self.evaluator_name}_"
            prefix = own if own.startswith("eval_") else f"eval_{own}"
            for key in METRIC_KEYS:
                values[key] = finite(metrics.get(prefix + key))
        self.record(
            MetricPoint(
                kind="eval",
                step=int(state.global_step),
                epoch=float(state.epoch or 0.0),
                values=values,
            )
        )


# Evaluations between the first and the last step take at most this share of the training
# steps' wall time (issue 12).
EVAL_TIME_SHARE = 0.10


class EvaluationBudget(TrainerCallback):
    """Lets the trainer evaluate during training only while the evaluations stay within
    `share` of the training steps' wall time.

    The trainer asks for evaluations on its eval_steps cadence; at each such step this callback
    cancels the evaluation unless the evaluations so far plus one more (as long as the latest
    measured one, at first `first_estimate_s`: the base model's scoring) fit in `share` of the
    time spent in training steps so far. Step 0 (the base model) and the last step (the
    fine-tuned model) are not budgeted: they are the job's before/after evaluations. Training
    time is everything between step ends except evaluations and checkpoint saves.

    On several devices every rank measures on its own clock and they evaluate when any rank
    finds the evaluation affordable (the trainer asks for it at the same steps on every rank).
    `decisions` keeps (step, allowed, eval_s, estimate_s, train_s) for each request, as seen
    when deciding.

    Which evaluations run depends on the clock, so an evaluation it allows must not change the
    training: the random generators are put back as they were before it (an evaluation's
    data loader draws its seed from torch's generator). A resumed run then trains exactly like
    an uninterrupted one, whichever evaluations each ran.
    """

    def __init__(
        self,
        first_estimate_s: float | None,
        share: float = EVAL_TIME_SHARE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.share = share
        self.estimate_s = first_estimate_s
        self.clock = clock
        self.train_s = 0.0
        self.eval_s = 0.0
        self.decisions: list[tuple[int, bool, float, float | None, float]] = []
        self._mark: float | None = None
        self._rng: dict[str, Any] | None = None

    def affordable(self) -> bool:
        """Whether one more evaluation keeps the evaluations within the budget. Without any
        estimate yet (a resumed pair-data run: no base evaluation), one is allowed, to measure."""
        if self.estimate_s is None:
            return True
        return self.eval_s + self.estimate_s <= self.share * self.train_s

    def _elapsed(self) -> float:
        now = self.clock()
        elapsed = now - self._mark if self._mark is not None else 0.0
        self._mark = now
        return elapsed

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        self._mark = self.clock()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        self.train_s += self._elapsed()
        if not control.should_evaluate or (
            state.max_steps and state.global_step >= state.max_steps
        ):
            return
        allowed = distributed.agree(self.affordable())
        self.decisions.append(
            (int(state.global_step), allowed, self.eval_s, self.estimate_s, self.train_s)
        )
        control.should_evaluate = allowed
        if allowed:
            self._rng = _rng_state()

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        seconds = self._elapsed()
        self.estimate_s = seconds
        if self._rng is not None:
            _restore_rng(self._rng)
            self._rng = None
        if 0 < state.global_step < state.max_steps:
            self.eval_s += seconds

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        self._elapsed()  # a checkpoint is neither training nor evaluation


def _rng_state() -> dict[str, Any]:
    import random

    import numpy as np
    import torch

    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any]) -> None:
    import random

    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])
