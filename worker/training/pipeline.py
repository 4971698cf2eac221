"""The whole fine-tuning run: a TrainingSpec in, a saved model and a TrainingResult out.

Follows the sentence-transformers training recipe: model, data, loss, evaluator, training
arguments, trainer, train, evaluate, save. Typed failures (errors.py) are raised for what a user can
fix; anything else propagates for the caller to record.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from worker.training.callbacks import ProgressCallback
from worker.training.data import load_train_data, load_triplet_data
from worker.training.errors import OutOfMemory, PrecisionUnsupported, TrainingError
from worker.training.evaluation import build_triplet_evaluator, evaluate
from worker.training.models import load_base_model
from worker.training.spec import Hyperparameters, ProgressReporter, TrainingResult, TrainingSpec

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
# Aim for about this many loss reports over a run (logging_steps is derived from it).
_LOSS_REPORTS = 100
_MAX_LOGGING_STEPS = 50


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


def logging_steps_for(hp: Hyperparameters, train_rows: int) -> int:
    """Log the training loss about _LOSS_REPORTS times a run (every step for short runs)."""
    if hp.max_steps is not None and hp.max_steps > 0:
        estimated = hp.max_steps
    else:
        estimated = math.ceil(train_rows / hp.batch_size) * hp.epochs
    return max(1, min(_MAX_LOGGING_STEPS, estimated // _LOSS_REPORTS))


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


def run(spec: TrainingSpec, report: ProgressReporter) -> TrainingResult:
    """Fine-tune spec.base_model with MultipleNegativesRankingLoss and save it to spec.output_dir.

    Writes the sentence-transformers model folder (safetensors weights, tokenizer, modules, README
    model card) plus metrics.json; returns what was produced. Metrics are computed on the test data,
    or the eval data when there is no test data, for the base and the fine-tuned model.
    """
    hp = spec.hyperparameters
    if not 0.0 <= hp.warmup_ratio < 1.0:
        raise TrainingError(f"warmup_ratio must be at least 0 and below 1, got {hp.warmup_ratio}.")
    choice = resolve_device(hp.precision)
    work_dir = Path(spec.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)

    import transformers

    transformers.set_seed(hp.seed)
    with _out_of_memory_as_error(hp.batch_size, hp.max_seq_length):
        model = load_base_model(spec.base_model, spec.model_dirs, choice.device, hp.max_seq_length)

    train_data = load_train_data(spec.train, work_dir)
    eval_data = load_triplet_data(spec.eval, work_dir, "eval") if spec.eval is not None else None
    test_data = load_triplet_data(spec.test, work_dir, "test") if spec.test is not None else None

    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )
    from transformers.trainer_callback import PrinterCallback

    loss = MultipleNegativesRankingLoss(model)

    evaluated: tuple[Literal["test", "eval"], Dataset] | None = None
    if test_data is not None:
        evaluated = ("test", test_data)
    elif eval_data is not None:
        evaluated = ("eval", eval_data)
    evaluator = (
        build_triplet_evaluator(evaluated[1], evaluated[0], batch_size=hp.batch_size)
        if evaluated is not None
        else None
    )

    base_metrics: dict[str, float] | None = None
    if evaluator is not None:
        with _out_of_memory_as_error(hp.batch_size, hp.max_seq_length):
            base_metrics = evaluate(model, evaluator)

    args = SentenceTransformerTrainingArguments(
        output_dir=str(work_dir / "trainer"),
        num_train_epochs=hp.epochs,
        per_device_train_batch_size=hp.batch_size,
        per_device_eval_batch_size=hp.batch_size,
        learning_rate=hp.learning_rate,
        # transformers 5 dropped warmup_ratio: a float below 1 in warmup_steps is the ratio.
        warmup_steps=float(hp.warmup_ratio),
        seed=hp.seed,
        bf16=choice.precision == "bf16",
        fp16=choice.precision == "fp16",
        max_steps=hp.max_steps if hp.max_steps is not None else -1,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="steps",
        logging_steps=logging_steps_for(hp, len(train_data)),
        disable_tqdm=True,
        use_cpu=choice.device == "cpu",
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=eval_data,  # not evaluated during training; named in the model card
        loss=loss,
        evaluator=evaluator,  # likewise: its results reach the card through the calls above/below
        callbacks=[ProgressCallback(report)],
    )
    # With tqdm disabled, transformers prints every log dict to stdout; progress goes to `report`.
    trainer.remove_callback(PrinterCallback)
    with _out_of_memory_as_error(hp.batch_size, hp.max_seq_length):
        trainer.train()
        total_steps = int(trainer.state.max_steps)
        fine_tuned_metrics = evaluate(model, evaluator) if evaluator is not None else None

    metrics: dict[str, dict[str, float]] | None = None
    if base_metrics is not None and fine_tuned_metrics is not None:
        metrics = {"base": base_metrics, "fine_tuned": fine_tuned_metrics}

    output_dir = Path(spec.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(output_dir))
    write_metrics(output_dir, metrics, spec.base_model, total_steps)

    return TrainingResult(
        model_dir=output_dir,
        metrics=metrics,
        total_steps=total_steps,
        train_rows=len(train_data),
        device=choice.device,
        precision=choice.precision,
        max_seq_length=model.max_seq_length,
        evaluated_on=evaluated[0] if evaluated is not None and metrics is not None else None,
    )


def write_metrics(
    output_dir: Path,
    metrics: dict[str, dict[str, float]] | None,
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
