"""The one typed object that describes a whole fine-tuning run, and what a run returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

Precision = Literal["auto", "fp32", "fp16", "bf16"]
SIMILARITY_FUNCTIONS: tuple[str, ...] = ("cosine", "dot", "euclidean", "manhattan")
# The keys of every metrics dict a run reports, in this order.
METRIC_KEYS: tuple[str, ...] = (
    "cosine_accuracy",
    "dot_accuracy",
    "euclidean_accuracy",
    "manhattan_accuracy",
    "max_accuracy",
)


@dataclass(frozen=True)
class LocalData:
    """An uploaded dataset file, already validated by the API.

    `columns` are the text columns in the order the loss takes them:
    (anchor, positive) or (anchor, positive, negative).
    """

    path: Path
    format: Literal["jsonl", "csv", "parquet"]
    columns: tuple[str, ...]


@dataclass(frozen=True)
class HubData:
    """A dataset on the Hugging Face Hub, loaded with `datasets.load_dataset` in the worker."""

    hub: str
    config: str | None = None
    split: str = "train"
    limit: int | None = None
    revision: str | None = None


DataSource = LocalData | HubData


@dataclass(frozen=True)
class Hyperparameters:
    """Every value resolved: the API fills in defaults before a spec is built."""

    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    max_seq_length: int | None = None  # None: the model's own
    seed: int = 42
    precision: Precision = "auto"
    max_steps: int | None = None


@dataclass(frozen=True)
class TrainingSpec:
    """A whole run: base model, data, loss, hyperparameters and where to write.

    `base_model` is a Hugging Face Hub id or the name of a folder inside one of `model_dirs`;
    the pipeline resolves it (folders first, then the Hub through its normal cache).
    `work_dir` is private scratch space for the run; the fine-tuned model is saved to
    `output_dir`.
    """

    base_model: str
    train: DataSource
    output_dir: Path
    work_dir: Path
    eval: DataSource | None = None
    test: DataSource | None = None
    loss: Literal["mnr"] = "mnr"
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    model_dirs: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Progress:
    step: int
    total_steps: int
    epoch: float
    loss: float | None


class ProgressReporter(Protocol):
    """Told about training progress; the caller decides how often to persist it."""

    def __call__(self, progress: Progress) -> None: ...


@dataclass(frozen=True)
class TrainingResult:
    """What a finished run produced.

    `metrics` is {"base": {...}, "fine_tuned": {...}} with the METRIC_KEYS, computed on the test
    data (or the eval data when there is no test data); None when the run had neither.
    """

    model_dir: Path
    metrics: dict[str, dict[str, float]] | None
    total_steps: int
    train_rows: int
    device: str
    precision: str
    max_seq_length: int | None = None  # the value actually used
    evaluated_on: Literal["test", "eval"] | None = None  # which data `metrics` came from
