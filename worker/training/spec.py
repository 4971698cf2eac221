"""The one typed object that describes a whole fine-tuning run, and what a run returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from rules import defaults
from rules.phases import Phase

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
# Added to the metrics dicts when the run has an STS set (correlations in [-1, 1]).
STS_METRIC_KEYS: tuple[str, ...] = ("sts_spearman_cosine", "sts_pearson_cosine")
# The columns of an STS set, in this order: two texts and a similarity score.
STS_COLUMNS: tuple[str, ...] = ("sentence1", "sentence2", "score")


@dataclass(frozen=True)
class LocalData:
    """An uploaded dataset file, already validated by the API.

    `columns` are the text columns in the order the loss takes them:
    (anchor, positive) or (anchor, positive, negative); for an STS set, the two texts and the
    score column: (sentence1, sentence2, score).
    """

    path: Path
    format: Literal["jsonl", "csv", "parquet"]
    columns: tuple[str, ...]


@dataclass(frozen=True)
class HubData:
    """A dataset on the Hugging Face Hub: `hub` is a repo id (rules.names), fetched
    into the Hugging Face cache by the Hub client and loaded from that snapshot (data.py)."""

    hub: str
    config: str | None = None
    split: str = "train"
    limit: int | None = None
    revision: str | None = None
    # Source columns to use, in loss order (anchor, positive, negatives... or sentence1,
    # sentence2, score); None picks them by name or type.
    columns: tuple[str, ...] | None = None


DataSource = LocalData | HubData

# Why a run stopped before its last step: the caller asked (cancel, or a hand-back before the
# worker shuts down), the job ran past its time limit, or the attempt lost its lease.
StopReason = Literal["cancelled", "handed_back", "timeout", "lease_lost"]


@dataclass(frozen=True)
class CheckpointPolicy:
    """Where and how often a run saves resumable checkpoints (model, optimizer, scheduler, RNG).

    Checkpoints of this run go to `dir` (the last `keep` are kept); `resume_from`, when set, is a
    complete checkpoint of an earlier attempt of the same job to continue from. A checkpoint is
    saved every `every_steps` steps (when set), whenever `every_s` seconds passed since the last
    one, and before a hand-back.
    """

    dir: Path
    every_s: float
    every_steps: int | None = None
    resume_from: Path | None = None
    keep: int = 2


class RunControl(Protocol):
    """The caller's say in a running job, asked at every training step."""

    def stop_requested(self) -> StopReason | None:
        """Why the run should stop now, or None to go on."""
        ...

    def checkpoint_saved(self, step: int, path: Path) -> None:
        """A complete checkpoint of `step` is at `path`."""
        ...


@dataclass(frozen=True)
class Hyperparameters:
    """Every value resolved: the API fills in defaults (rules.defaults) before a spec is built."""

    epochs: int = defaults.EPOCHS
    batch_size: int = defaults.BATCH_SIZE
    learning_rate: float = defaults.LEARNING_RATE
    warmup_ratio: float = defaults.WARMUP_RATIO
    max_seq_length: int | None = defaults.MAX_SEQ_LENGTH  # None: the model's own
    seed: int = defaults.SEED
    precision: Precision = defaults.PRECISION
    max_steps: int | None = defaults.MAX_STEPS
    # None: about ten evaluations a run (ceil(total_steps / 10))
    eval_steps: int | None = defaults.EVAL_STEPS
    # enforced by the worker (worker.lease), not the pipeline
    time_limit_s: int | None = defaults.TIME_LIMIT_S


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
    sts: DataSource | None = None
    loss: Literal["mnr"] = "mnr"
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    model_dirs: tuple[Path, ...] = ()
    checkpoints: CheckpointPolicy | None = None  # None: no checkpoints, no resume
    # Whether the saved model card may quote rows of the data (widget, usage example, sample
    # tables); off, it holds sizes and statistics only.
    card_examples: bool = False


@dataclass(frozen=True)
class Progress:
    step: int
    total_steps: int
    epoch: float
    loss: float | None


class ProgressReporter(Protocol):
    """Told about training progress; the caller decides how often to persist it."""

    def __call__(self, progress: Progress) -> None: ...


class PhaseReporter(Protocol):
    """Told when the run enters each of rules.phases.RUN_PHASES, in order."""

    def __call__(self, phase: Phase) -> None: ...


@dataclass(frozen=True)
class MetricPoint:
    """One point of a run's time series.

    kind "train": a logged training step; `values` has `loss`, `learning_rate` and, when the
    trainer reports it, `grad_norm`. kind "eval": an evaluation on the eval set (step 0 is the
    base model); `values` has `loss` (MNR on the eval set) and, when the eval set is triplets,
    the METRIC_KEYS. A value the trainer reported as NaN or infinite is None.
    """

    kind: Literal["train", "eval"]
    step: int
    epoch: float
    values: dict[str, float | None]


class MetricsRecorder(Protocol):
    """Told about every MetricPoint as it happens; the caller decides how to persist them."""

    def __call__(self, point: MetricPoint) -> None: ...


@dataclass(frozen=True)
class Holdout:
    """Training rows held out (seeded, not trained on) as the eval set of a run without one."""

    rows: int
    share: float
    seed: int


# A metrics dict: METRIC_KEYS (and STS_METRIC_KEYS with an STS set) -> value. An STS correlation
# is None when it is undefined (e.g. the model gives every pair the same similarity).
Metrics = dict[str, float | None]


@dataclass(frozen=True)
class TrainingResult:
    """What a finished run produced.

    `metrics` is {"base": {...}, "fine_tuned": {...}} with the METRIC_KEYS (plus STS_METRIC_KEYS
    when the run had an STS set), computed on the test data, else the eval data, else the held-out
    rows; None when there were no triplets to score on.
    """

    model_dir: Path
    metrics: dict[str, Metrics] | None
    total_steps: int
    train_rows: int  # the rows trained on (held-out rows excluded)
    device: str
    precision: str
    max_seq_length: int | None = None  # the value actually used
    # Which data `metrics` came from.
    evaluated_on: Literal["test", "eval", "holdout"] | None = None
    eval_rows: int | None = None  # rows of the eval set (given or held out); None: no eval set
    test_rows: int | None = None
    sts_rows: int | None = None
    holdout: Holdout | None = None  # set when the eval set was held out of the training rows
    eval_steps: int | None = None  # steps between two evaluations; None: none during training
    logging_steps: int = 1  # steps between two logged training losses
    # Role ("train", "eval", "test", "sts") -> the Hub commit sha that role's Hub dataset resolved
    # to (whatever `revision` pinned: a branch, a tag, a sha or nothing); local data has none.
    hub_revisions: dict[str, str] = field(default_factory=dict)
    # Seconds the run spent in each of rules.phases.RUN_PHASES (the evaluations during training
    # counted as evaluating, the trainer's one before the first step as evaluating_base).
    timings: dict[str, float] = field(default_factory=dict)
    # Steps this run trained itself (a resumed run: without the steps of its checkpoint).
    trained_steps: int = 0
    # Rows one step trains on, over all devices (the global batch).
    batch_size: int = 0
