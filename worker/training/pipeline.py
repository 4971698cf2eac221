"""The whole fine-tuning run: a TrainingSpec in, a saved model and a TrainingResult out.

Follows the sentence-transformers training recipe: model, data, loss, evaluator, training
arguments, trainer, train, evaluate, save. Typed failures (errors.py) are raised for what a user can
fix; anything else propagates for the caller to record.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from rules.devices import per_device_batch_size
from rules.phases import Phase
from rules.steps import total_steps
from worker.training import distributed
from worker.training.callbacks import (
    EvaluationBudget,
    MetricsCallback,
    ProgressCallback,
    finite,
)
from worker.training.card import CardFacts, add_section
from worker.training.checkpoints import CheckpointCallback, StopCallback, checkpoint_step
from worker.training.data import load_sts_data, load_train_data, load_triplet_data, split_holdout
from worker.training.errors import (
    OutOfMemory,
    PrecisionUnsupported,
    TrainingError,
    TrainingStopped,
)
from worker.training.evaluation import (
    build_sts_evaluator,
    build_triplet_evaluator,
    build_triplet_loss_evaluator,
    evaluate,
    evaluate_sts,
    same_triplets,
)
from worker.training.models import load_base_model
from worker.training.phases import EvaluationTimer, PhaseClock
from worker.training.spec import (
    CheckpointPolicy,
    Hyperparameters,
    MetricPoint,
    Metrics,
    MetricsRecorder,
    PhaseReporter,
    Progress,
    ProgressReporter,
    RunControl,
    TrainingResult,
    TrainingSpec,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
# Aim for about this many loss reports over a run (logging_steps is derived from it).
_LOSS_REPORTS = 100
_MAX_LOGGING_STEPS = 50
# Smallest batch the evaluators encode with.
EVAL_ENCODE_BATCH_SIZE = 128
# Without eval_steps, evaluate at most about this many times a run (and at its last step), and
# only while the evaluations fit in callbacks.EVAL_TIME_SHARE of the training time.
_EVALUATIONS = 10


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # "cuda" or "cpu"
    precision: str  # "fp32", "fp16" or "bf16"


def resolve_device(requested: str) -> DeviceChoice:
    """cuda when available, else cpu; and the precision to train in.

    `auto` is bf16 on CUDA GPUs that support it, fp16 on other GPUs and fp32 on CPU. fp16/bf16 on
    CPU, or bf16 on a GPU without bf16 support, raise PrecisionUnsupported.
    """
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    bf16_ok = device == "cuda" and torch.cuda.is_bf16_supported()
    if requested == "auto":
        if device == "cpu":
            return DeviceChoice(device, "fp32")
        return DeviceChoice(device, "bf16" if bf16_ok else "fp16")
    if requested == "fp32":
        return DeviceChoice(device, "fp32")
    if requested not in ("fp16", "bf16"):
        raise PrecisionUnsupported(
            f"Unknown precision {requested!r}; use auto, fp32, fp16 or bf16."
        )
    if device == "cpu":
        raise PrecisionUnsupported(
            f"Precision {requested} needs a GPU, and this worker has none; use auto or fp32."
        )
    if requested == "bf16" and not bf16_ok:
        raise PrecisionUnsupported(
            "This GPU does not support bf16; use auto (fp16 here), fp16 or fp32."
        )
    return DeviceChoice(device, requested)


def estimated_total_steps(hp: Hyperparameters, train_rows: int) -> int:
    """The steps the trainer will run: max_steps, else batches per epoch times epochs."""
    return total_steps(train_rows, hp.batch_size, hp.epochs, hp.max_steps)


def logging_steps_for(hp: Hyperparameters, train_rows: int) -> int:
    """Log the training loss about _LOSS_REPORTS times a run (every step for short runs)."""
    estimated = estimated_total_steps(hp, train_rows)
    return max(1, min(_MAX_LOGGING_STEPS, estimated // _LOSS_REPORTS))


def eval_steps_for(hp: Hyperparameters, train_rows: int) -> int:
    """hp.eval_steps, else ceil(total steps / _EVALUATIONS): at most _EVALUATIONS evaluations,
    exactly that many when the total is a multiple of it (the trainer adds one at the last step
    when it is not a multiple of eval_steps). Without hp.eval_steps these are the steps the
    trainer may evaluate at: callbacks.EvaluationBudget lets it only while the evaluations stay
    within a tenth of the training time, so a small job evaluates fewer times."""
    if hp.eval_steps is not None:
        return hp.eval_steps
    return max(1, math.ceil(estimated_total_steps(hp, train_rows) / _EVALUATIONS))


@contextmanager
def _out_of_memory_as_error(batch_size: int, max_seq_length: int | None) -> Iterator[None]:
    import torch

    try:
        yield
    except torch.OutOfMemoryError as exc:
        torch.cuda.empty_cache()
        length = f"max_seq_length {max_seq_length}" if max_seq_length else "the model's max length"
        raise OutOfMemory(
            f"The GPU ran out of memory with batch_size {batch_size} and {length}. "
            "Try a smaller batch_size or a smaller max_seq_length."
        ) from exc


def run(
    spec: TrainingSpec,
    report: ProgressReporter,
    record: MetricsRecorder | None = None,
    control: RunControl | None = None,
    phases: PhaseReporter | None = None,
) -> TrainingResult:
    """Fine-tune spec.base_model with MultipleNegativesRankingLoss and save it to spec.output_dir.

    Writes the sentence-transformers model folder (safetensors weights, tokenizer, modules, README
    model card with a "Fine-tuned with Embedtune" section) plus metrics.json; returns what was
    produced. The card quotes rows of the data only with spec.card_examples (see
    withhold_card_examples).

    Without eval data, a seeded share of the training rows is held out as the eval set (see
    data.split_holdout) and not trained on. With an eval set, the eval set is evaluated for the
    base model (step 0), every eval_steps steps and at the last step: MNR loss on the eval set and,
    for triplets, triplet accuracy (one encoding pass gives both). When the final metrics come
    from the same triplets, the base and fine-tuned scores are the step-0 and last-step
    evaluations (not computed twice). `record` (optional) gets a MetricPoint for each of those and
    for every logged training loss.

    Metrics are computed on the test data, else the eval data, else the held-out rows (when they
    are triplets), for the base and the fine-tuned model; with STS data, they also hold the
    Spearman and Pearson correlation of cosine similarity with its scores.

    `phases` (optional) is told when each of rules.phases.RUN_PHASES starts; the result's
    `timings` has the seconds of each (see phases.PhaseClock).

    Run in every rank of a torch.distributed process group (worker.launch starts them), it trains
    data-parallel (worker.training.distributed): batch_size is the global batch, the main rank
    alone reports, records and saves, and every rank returns the same result.
    """
    hp = spec.hyperparameters
    checkpoints = spec.checkpoints
    if not 0.0 <= hp.warmup_ratio < 1.0:
        raise TrainingError(f"warmup_ratio must be at least 0 and below 1, got {hp.warmup_ratio}.")
    if hp.eval_steps is not None and hp.eval_steps < 1:
        raise TrainingError(f"eval_steps must be at least 1, got {hp.eval_steps}.")
    devices = distributed.world_size()
    device_batch_size = per_device_batch_size(hp.batch_size, devices)
    main = distributed.is_main()
    if not main:
        # The same callbacks on every rank (they steer the trainer), silent on all but one.
        report = _no_progress
        record = _no_point if record is not None else None
        phases = None
    clock = PhaseClock(phases)
    clock.enter(Phase.LOADING_MODEL)
    choice = resolve_device(hp.precision)
    work_dir = Path(spec.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)

    import transformers

    transformers.set_seed(hp.seed)
    with _out_of_memory_as_error(hp.batch_size, hp.max_seq_length):
        model = load_base_model(spec.base_model, spec.model_dirs, choice.device, hp.max_seq_length)

    clock.enter(Phase.LOADING_DATA)
    hub_revisions: dict[str, str] = {}  # role -> the commit its Hub dataset resolved to
    train_data = load_train_data(spec.train, work_dir, revisions=hub_revisions)
    eval_data = (
        load_triplet_data(spec.eval, work_dir, "eval", revisions=hub_revisions)
        if spec.eval is not None
        else None
    )
    test_data = (
        load_triplet_data(spec.test, work_dir, "test", revisions=hub_revisions)
        if spec.test is not None
        else None
    )
    sts_data = (
        load_sts_data(spec.sts, work_dir, revisions=hub_revisions) if spec.sts is not None else None
    )
    holdout = None
    if eval_data is None:
        train_data, eval_data, holdout = split_holdout(train_data, hp.seed)
    eval_role: Literal["eval", "holdout"] = "holdout" if holdout is not None else "eval"

    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )
    from transformers.trainer_callback import PrinterCallback

    # On several devices the training loss sees the embeddings of every device's piece of the
    # global batch. The eval loss is computed by the main rank alone, from embeddings of whole
    # global batches: it never gathers.
    eval_loss = MultipleNegativesRankingLoss(model)
    loss = (
        eval_loss
        if devices == 1
        else MultipleNegativesRankingLoss(model, gather_across_devices=True)
    )

    # Evaluators only encode (no activations kept for backward), so they take larger batches
    # than training: on a GPU, small batches leave evaluation bound by kernel launches. The
    # eval loss keeps the training batch size: MNR's loss depends on the in-batch negatives.
    encode_batch = max(hp.batch_size, EVAL_ENCODE_BATCH_SIZE)
    # Evaluated during training: the eval set, when it is triplets, by an evaluator that also
    # computes the MNR eval loss from the embeddings it encodes for the accuracies (in the
    # trainer's eval batches), so an evaluation is one encoding pass and the trainer gets no
    # eval_dataset of its own to run a second, loss-only pass over. Pair eval sets (no
    # negatives: no accuracies) keep the trainer's eval-loss pass.
    eval_evaluator = (
        build_triplet_loss_evaluator(
            eval_data, eval_role, eval_loss, hp.batch_size, hp.seed, batch_size=encode_batch
        )
        if eval_data is not None and len(eval_data.column_names) >= 3
        else None
    )
    # The final metrics: the test data, else the eval set when it is triplets.
    evaluated: Literal["test", "eval", "holdout"] | None = None
    evaluator = None
    if test_data is not None:
        evaluated = "test"
        if eval_evaluator is not None and same_triplets(eval_evaluator, test_data):
            evaluator = eval_evaluator  # the same triplets: one evaluator scores both
        else:
            evaluator = build_triplet_evaluator(test_data, "test", batch_size=encode_batch)
    elif eval_evaluator is not None:
        evaluated, evaluator = eval_role, eval_evaluator
    # When the final evaluator is the eval set's, scoring the base model before training and the
    # fine-tuned model after it already are the evaluations at step 0 and at the last step: the
    # trainer skips those two, and their eval points are recorded from these scores.
    scores_are_evals = evaluator is not None and evaluator is eval_evaluator
    sts_evaluator = (
        build_sts_evaluator(sts_data, batch_size=encode_batch) if sts_data is not None else None
    )

    def score(scored: SentenceTransformer) -> Metrics | None:
        if evaluator is None:
            return None
        values: Metrics | None = None
        with distributed.main_rank_evaluation(scored) as runs_here:
            if runs_here:
                values = dict(evaluate(scored, evaluator))
                if sts_evaluator is not None:
                    values.update(evaluate_sts(scored, sts_evaluator))
        return distributed.share(values)

    clock.enter(Phase.EVALUATING_BASE)
    scoring_started = time.monotonic()
    with _out_of_memory_as_error(hp.batch_size, hp.max_seq_length):
        base_metrics = score(model)
    # The first estimate of what one evaluation costs (the eval set is scored the same way).
    base_score_s = time.monotonic() - scoring_started if base_metrics is not None else None
    clock.enter(Phase.TRAINING)

    evaluating = eval_data is not None
    # A resumed attempt's step 0 was recorded by the first attempt.
    resuming = checkpoints is not None and checkpoints.resume_from is not None
    if scores_are_evals and record is not None and main and not resuming:
        _record_eval_point(record, eval_evaluator, step=0, epoch=0.0)
    eval_steps = eval_steps_for(hp, len(train_data)) if evaluating else None
    logging_steps = logging_steps_for(hp, len(train_data))
    args = SentenceTransformerTrainingArguments(
        # Checkpoints land here; without a policy nothing is saved (save_strategy "no" and no
        # CheckpointCallback).
        output_dir=str(checkpoints.dir if checkpoints else work_dir / "trainer"),
        save_total_limit=checkpoints.keep if checkpoints else None,
        num_train_epochs=hp.epochs,
        per_device_train_batch_size=device_batch_size,
        per_device_eval_batch_size=device_batch_size,
        learning_rate=hp.learning_rate,
        # transformers 5 dropped warmup_ratio: a float below 1 in warmup_steps is the ratio.
        warmup_steps=float(hp.warmup_ratio),
        seed=hp.seed,
        bf16=choice.precision == "bf16",
        fp16=choice.precision == "fp16",
        max_steps=hp.max_steps if hp.max_steps is not None else -1,
        batch_sampler=(
            BatchSamplers.NO_DUPLICATES
            if devices == 1
            # Typed as returning its own sampler class; the trainer only iterates what it gets.
            else distributed.GlobalBatches(devices)  # type: ignore[arg-type]
        ),
        report_to="none",
        save_strategy="no",
        # The trainer evaluates the eval set every eval_steps steps (without the user's
        # eval_steps, those EvaluationBudget can afford), and at the last step when
        # that is not a multiple of eval_steps; also the base model first, unless the base
        # score above was that evaluation (then _SkipLastStepEvaluation leaves the last step
        # to the fine-tuned score too).
        eval_strategy="steps" if evaluating else "no",
        eval_steps=eval_steps,
        eval_on_start=evaluating and not scores_are_evals and not resuming,
        logging_strategy="steps",
        logging_steps=logging_steps,
        disable_tqdm=True,
        use_cpu=choice.device == "cpu",
        ddp_backend=("nccl" if choice.device == "cuda" else "gloo") if devices > 1 else None,
    )
    callbacks: list[Any] = [ProgressCallback(report)]
    if checkpoints is not None:
        callbacks.append(CheckpointCallback(checkpoints, control))
    stop = StopCallback(control, checkpoints is not None) if control is not None else None
    if stop is not None:
        callbacks.append(stop)
    if scores_are_evals:
        callbacks.append(_SkipLastStepEvaluation())
    budget = EvaluationBudget(base_score_s) if evaluating and hp.eval_steps is None else None
    if budget is not None:
        callbacks.append(budget)
    if record is not None:
        callbacks.append(
            MetricsCallback(record, eval_evaluator.name if eval_evaluator is not None else None)
        )
    # Last: the other callbacks' work at a step's end counts as training, not evaluation.
    callbacks.append(EvaluationTimer(clock))
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=eval_data if eval_evaluator is None else None,
        loss=loss,
        evaluator=eval_evaluator,
        callbacks=callbacks,
    )
    # With tqdm disabled, transformers prints every log dict to stdout; progress goes to `report`.
    trainer.remove_callback(PrinterCallback)
    if not spec.card_examples:
        # The trainer's model card callback collected rows as it was built: drop them before
        # any save (checkpoints write the card too).
        withhold_card_examples(model)
    with _out_of_memory_as_error(hp.batch_size, hp.max_seq_length):
        trainer.train(resume_from_checkpoint=_resume_path(checkpoints))
        if stop is not None and stop.reason is not None:
            saved = checkpoints.dir / f"checkpoint-{stop.step}" if checkpoints else None
            raise TrainingStopped(
                stop.reason, stop.step, str(saved) if saved and saved.is_dir() else None
            )
        total_steps = int(trainer.state.max_steps)
        if budget is not None:
            _log_budget(budget)
        clock.enter(Phase.EVALUATING)
        fine_tuned_metrics = score(model)
    if scores_are_evals and record is not None and main:
        _record_eval_point(
            record,
            eval_evaluator,
            step=int(trainer.state.global_step),
            epoch=float(trainer.state.epoch or 0.0),
        )

    metrics: dict[str, Metrics] | None = None
    if base_metrics is not None and fine_tuned_metrics is not None:
        metrics = {"base": base_metrics, "fine_tuned": fine_tuned_metrics}
    evaluated_on = evaluated if metrics is not None else None

    clock.enter(Phase.SAVING)
    output_dir = Path(spec.output_dir)
    if main:
        output_dir.mkdir(parents=True, exist_ok=True)
        if not spec.card_examples:
            withhold_card_examples(model)  # again, in case anything collected rows since
        model.save(str(output_dir))
        write_metrics(output_dir, metrics, spec.base_model, total_steps)
        used = asdict(hp)
        # A limit on the service's run, not a property of the model.
        used.pop("time_limit_s", None)
        used.update(
            precision=choice.precision, max_seq_length=model.max_seq_length, eval_steps=eval_steps
        )
        if devices > 1:
            used["devices"] = devices  # batch_size stays the global batch
        add_section(
            output_dir,
            CardFacts(
                base_model=spec.base_model,
                loss="MultipleNegativesRankingLoss",
                total_steps=total_steps,
                train_rows=len(train_data),
                eval_rows=len(eval_data) if eval_data is not None else None,
                test_rows=len(test_data) if test_data is not None else None,
                sts_rows=len(sts_data) if sts_data is not None else None,
                holdout=holdout,
                hyperparameters=used,
                metrics=metrics,
                evaluated_on=evaluated_on,
            ),
        )

    timings = clock.stop()
    resumed_from = checkpoints.resume_from if checkpoints is not None else None
    first_step = (checkpoint_step(resumed_from) or 0) if resumed_from is not None else 0
    return TrainingResult(
        model_dir=output_dir,
        metrics=metrics,
        total_steps=total_steps,
        train_rows=len(train_data),
        device=choice.device,
        precision=choice.precision,
        max_seq_length=model.max_seq_length,
        evaluated_on=evaluated_on,
        eval_rows=len(eval_data) if eval_data is not None else None,
        test_rows=len(test_data) if test_data is not None else None,
        sts_rows=len(sts_data) if sts_data is not None else None,
        holdout=holdout,
        eval_steps=eval_steps,
        logging_steps=logging_steps,
        hub_revisions=hub_revisions,
        timings=timings,
        trained_steps=max(0, int(trainer.state.global_step) - first_step),
        batch_size=hp.batch_size,
    )


def _no_progress(progress: Progress) -> None:
    """What a rank other than the main one does with progress."""


def _no_point(point: MetricPoint) -> None:
    """What a rank other than the main one does with metric points."""


def withhold_card_examples(model: SentenceTransformer) -> None:
    """Keep every row of the data out of the model card sentence-transformers writes on save.

    Its card data (model.model_card_data) quotes rows in three places, all collected when the
    trainer is built: the YAML `widget:` (sentences of the eval or training data), the usage
    snippet (`usage_examples`, taken from the same sentences and encoded on save) and a
    "Samples" table of the first rows of each train and eval dataset (`examples`,
    `examples_table`). Cleared, the widget is empty, the snippet uses sentence-transformers'
    stock sentences, and each dataset keeps only its size, columns and token statistics.
    """
    card = model.model_card_data
    card.widget = []
    card.usage_examples = None  # None: run_usage_snippet falls back to its stock sentences
    card.usage_examples_display = None
    card.label_example_list = []
    for info in (*card.train_datasets, *card.eval_datasets):
        info.pop("examples", None)
        info.pop("_example_columns", None)
        info["examples_table"] = ""  # the template shows "Samples" only when this is set
    card._cached_dict = None


def _record_eval_point(record: MetricsRecorder, evaluator: Any, step: int, epoch: float) -> None:
    """An eval MetricPoint from what a TripletLossEvaluator computed last, as MetricsCallback
    records the trainer's evaluations: "loss" and the METRIC_KEYS, non-finite values as None."""
    values = {key: finite(value) for key, value in evaluator.last_values.items()}
    record(MetricPoint(kind="eval", step=step, epoch=epoch, values=values))


class _SkipLastStepEvaluation(TrainerCallback):
    """Cancels the trainer's evaluation at the last step (callbacks run after the trainer's flow
    callback, which asks for it): the pipeline scores the fine-tuned model on the same data right
    after training and records that as the last step's eval point."""

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        if state.max_steps and state.global_step >= state.max_steps:
            control.should_evaluate = False


def _log_budget(budget: EvaluationBudget) -> None:
    allowed = [step for step, ok, *_ in budget.decisions if ok]
    logger.info(
        "evaluated during training at steps %s (%d of %d asked for): %.1f s of %.1f s training",
        allowed,
        len(allowed),
        len(budget.decisions),
        budget.eval_s,
        budget.train_s,
    )


def _resume_path(policy: CheckpointPolicy | None) -> str | None:
    if policy is None or policy.resume_from is None:
        return None
    logger.info("resuming from checkpoint %s", policy.resume_from)
    return str(policy.resume_from)


def write_metrics(
    output_dir: Path,
    metrics: dict[str, Metrics] | None,
    base_model: str,
    total_steps: int,
) -> Path:
    """metrics.json: {"base": {...}|null, "fine_tuned": {...}|null, "base_model", "total_steps"}."""
    payload: dict[str, Any] = {
        "base": metrics["base"] if metrics else None,
        "fine_tuned": metrics["fine_tuned"] if metrics else None,
        "base_model": base_model,
        "total_steps": total_steps,
    }
    path = Path(output_dir) / METRICS_FILE
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path
