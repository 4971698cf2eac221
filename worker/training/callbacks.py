"""A transformers TrainerCallback that tells a ProgressReporter how training is going."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from worker.training.spec import Progress, ProgressReporter


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
