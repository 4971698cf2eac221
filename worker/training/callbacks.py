"""transformers TrainerCallbacks: one tells a ProgressReporter how training is going, the other
turns logs and evaluations into MetricPoints for a MetricsRecorder."""

from __future__ import annotations

import math
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from worker.training.spec import (
    METRIC_KEYS,
    MetricPoint,
    MetricsRecorder,
    Progress,
    ProgressReporter,
)


class ProgressCallback(TrainerCallback):
    """Reports Progress(step, total_steps, epoch, latest logged training loss).

    Called at every step end, and again when the trainer logs a training loss (so the loss of a
    logging step is reported at that same step). Throttling is the reporter's job.
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
