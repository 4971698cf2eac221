"""Request and response shapes of /jobs, split by role: create, read, list."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from app.routing import GPU_TYPE_MAX_LENGTH, GPU_TYPE_PATTERN, GPUS_CAP, check_gpu_type
from app.settings import BATCH_SIZE_CAP, EPOCHS_CAP, SEQ_LENGTH_CAP, STEPS_CAP
from rules import defaults, names

if TYPE_CHECKING:
    from app.jobs.models import JobEvent

Precision = Literal["auto", "fp32", "fp16", "bf16"]
# The most rows a Hub reference's `limit` may name (far above any real dataset).
HUB_LIMIT_CAP = 10_000_000_000
# Smaller learning rates change nothing in fp32 (and underflow in half precision).
LEARNING_RATE_MIN = 1e-9

# Names of Hub repos, revisions, configs, splits and columns follow rules.names, the
# rules the worker checks again: a client's string is a name, never a filesystem path.

# Validation context of rows read back from the database (service.to_read): they are shown as
# stored, even when they predate the name rules (the worker refuses those when it runs them).
STORED = "stored"


def _is_stored(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and bool(info.context.get(STORED))


class HubDatasetRef(BaseModel):
    """A dataset on the Hugging Face Hub, loaded with `datasets.load_dataset` by the worker."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "hub": "sentence-transformers/all-nli",
                    "config": "triplet",
                    "split": "train",
                    "limit": 100000,
                }
            ]
        },
    )

    hub: str = Field(
        min_length=1,
        max_length=200,
        description="Hub dataset id, 'org/name' or 'name'. Always looked up on the Hugging Face "
        "Hub (or the worker's Hugging Face cache), never as a path.",
        examples=["sentence-transformers/all-nli"],
    )
    config: str | None = Field(
        None,
        max_length=names.CONFIG_MAX_LENGTH,
        description="Dataset configuration (letters, digits, '-', '_', '.').",
        examples=["triplet"],
    )
    split: str = Field(
        "train",
        min_length=1,
        max_length=names.SPLIT_MAX_LENGTH,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Split to load (letters, digits, '-', '_', '.').",
        examples=["train"],
    )
    limit: int | None = Field(
        None,
        ge=1,
        le=HUB_LIMIT_CAP,
        description="Use only the first N rows of the split.",
        examples=[100000],
    )
    revision: str | None = Field(
        None,
        max_length=names.REVISION_MAX_LENGTH,
        description="Git revision (branch, tag or commit sha) to pin.",
        examples=["main"],
    )
    columns: dict[str, str] | None = Field(
        None,
        description="Role -> column of the Hub dataset, naming every role the data plays: "
        "anchor, positive and any negatives (negative or negative_1..negative_N), or "
        "sentence1, sentence2, score for sts_dataset. Other columns are not used. Without "
        f"it: anchor/positive/negative by name, else the first text columns. At most "
        f"{names.COLUMNS_MAX} entries of at most {names.COLUMN_NAME_MAX_LENGTH} characters.",
        examples=[{"anchor": "query", "positive": "answer"}],
    )

    @field_validator("hub")
    @classmethod
    def _hub_id(cls, value: str, info: ValidationInfo) -> str:
        return value if _is_stored(info) else names.check_hub_id(value)

    @field_validator("config")
    @classmethod
    def _config(cls, value: str | None, info: ValidationInfo) -> str | None:
        return value if value is None or _is_stored(info) else names.check_config(value)

    @field_validator("split")
    @classmethod
    def _split(cls, value: str, info: ValidationInfo) -> str:
        return value if _is_stored(info) else names.check_split(value)

    @field_validator("revision")
    @classmethod
    def _revision(cls, value: str | None, info: ValidationInfo) -> str | None:
        return value if value is None or _is_stored(info) else names.check_revision(value)

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: dict[str, str] | None, info: ValidationInfo) -> dict[str, str] | None:
        if value is not None and not _is_stored(info):
            names.check_columns(value)
        return value


DatasetRef = str | HubDatasetRef


class HyperparametersIn(BaseModel):
    # Strict: the OpenAPI says integer, so "16" is refused rather than quietly converted.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    epochs: int = Field(
        defaults.EPOCHS,
        ge=1,
        le=EPOCHS_CAP,
        description="Passes over the training data. At most the server's EMBEDTUNE_MAX_EPOCHS "
        "(or your team's limit).",
    )
    batch_size: int = Field(
        defaults.BATCH_SIZE,
        ge=2,
        le=BATCH_SIZE_CAP,
        description="Pairs per batch. MNR uses every other row of a batch as a negative, "
        "so larger batches usually train better. The global batch: a job on several GPUs "
        "(resources.gpus) gives each batch_size / gpus rows and gathers the embeddings across "
        "them, so it must be a multiple of gpus. At most the server's "
        "EMBEDTUNE_MAX_BATCH_SIZE (or your team's limit).",
    )
    learning_rate: float = Field(
        defaults.LEARNING_RATE,
        ge=LEARNING_RATE_MIN,
        le=1,
        description=f"Peak AdamW learning rate, from {LEARNING_RATE_MIN:g} to 1.",
    )
    warmup_ratio: float = Field(
        defaults.WARMUP_RATIO,
        ge=0,
        lt=1,
        description="Share of steps with a linearly rising learning rate.",
    )
    max_seq_length: int | None = Field(
        defaults.MAX_SEQ_LENGTH,
        ge=8,
        le=SEQ_LENGTH_CAP,
        description="Tokens per text before truncation. Null: the base model's own. At most "
        "the server's EMBEDTUNE_MAX_SEQ_LENGTH (or your team's limit).",
    )
    seed: int = Field(defaults.SEED, ge=0, le=2**31 - 1, description="Random seed.")
    precision: Precision = Field(
        defaults.PRECISION,  # type: ignore[arg-type]
        description="auto: bf16 on GPUs that support it, fp16 on other GPUs, fp32 on CPU.",
    )
    max_steps: int | None = Field(
        defaults.MAX_STEPS,
        ge=1,
        le=STEPS_CAP,
        description="Stop after this many steps (overrides epochs). At most the server's "
        "EMBEDTUNE_MAX_STEPS (or your team's limit).",
    )
    eval_steps: int | None = Field(
        defaults.EVAL_STEPS,
        ge=1,
        le=10_000_000,
        description="Evaluate on the eval set (or the hold-out) every this many steps, and at "
        "the last step. Null: at most about ten times a job (every ceil(total_steps / 10) "
        "steps), and only while the evaluations during training take at most a tenth of the "
        "training time; step 0 and the last step always. The job shows the cadence once it "
        "ran.",
        examples=[500],
    )
    time_limit_s: int | None = Field(
        defaults.TIME_LIMIT_S,
        ge=1,
        description="Fail the job with `timeout` once it has run this many seconds (summed over "
        "its attempts). At most the server's EMBEDTUNE_MAX_TIME_LIMIT_S, which is also the "
        "limit of a job that sets none.",
        examples=[3600],
    )


class JobResources(BaseModel):
    """The hardware a job asks for; the job waits in the queue of exactly that (app.routing)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"gpu_type": "h100", "gpus": 2}, {"gpus": 1}]},
    )

    gpu_type: str | None = Field(
        None,
        max_length=GPU_TYPE_MAX_LENGTH,
        pattern=f"^{GPU_TYPE_PATTERN}$",
        description="Run only on workers of this GPU type: one of the server's "
        "EMBEDTUNE_GPU_TYPES (422 otherwise). Null: any worker.",
        examples=["h100"],
    )
    gpus: int = Field(
        1,
        ge=1,
        le=GPUS_CAP,
        description="Devices of one worker the job trains on (distributed data-parallel when "
        "more than 1). At most the server's EMBEDTUNE_MAX_GPUS_PER_JOB.",
        examples=[2],
    )

    @field_validator("gpu_type")
    @classmethod
    def _gpu_type(cls, value: str | None) -> str | None:
        return value if value is None else check_gpu_type(value)


class JobQueue(BaseModel):
    """Where a queued job waits."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "embedtune.h100.x2",
                    "position": 1,
                    "workers": 0,
                    "message": "no live worker serves gpu_type 'h100' with 2 GPUs; the job "
                    "waits until one starts",
                }
            ]
        }
    )

    name: str = Field(
        description="The queue: the server's EMBEDTUNE_QUEUE for jobs of any GPU type on 1 "
        "device, with `.<gpu_type>` and/or `.x<gpus>` added for jobs that ask for more.",
        examples=["embedtune.h100.x2"],
    )
    position: int = Field(
        description="1 = next: how many queued jobs (of every team) entered this queue before "
        "this one, plus 1.",
        examples=[3],
    )
    workers: int = Field(
        description="Live workers (seen within three heartbeats) taking jobs from this queue.",
        examples=[2],
    )
    message: str | None = Field(
        None,
        description="Set when no live worker takes this queue: the job waits until a worker "
        "with that GPU type and enough devices starts.",
    )


_CARD_EXAMPLES = (
    "Quote a few training and evaluation rows in the model card (README.md) of the fine-tuned "
    "model: its widget, usage example and per-dataset sample tables. Off by default: the card "
    "then holds no row of your data, only sizes and statistics."
)


class JobCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "name": "nli-mpnet",
                    "base_model": "microsoft/mpnet-base",
                    "train_dataset": {
                        "hub": "sentence-transformers/all-nli",
                        "config": "triplet",
                        "split": "train",
                        "limit": 100000,
                    },
                    "test_dataset": {
                        "hub": "sentence-transformers/all-nli",
                        "config": "triplet",
                        "split": "test",
                    },
                    "hyperparameters": {"epochs": 1, "batch_size": 16},
                    "metadata": {"team": "search"},
                }
            ]
        },
    )

    base_model: str = Field(
        min_length=1,
        max_length=300,
        description="A Hugging Face Hub id ('org/name' or 'name'), or the name of a folder "
        "inside one of the directories in EMBEDTUNE_MODEL_DIRS. Never a filesystem path.",
        examples=["microsoft/mpnet-base"],
    )
    train_dataset: DatasetRef = Field(
        description="An uploaded dataset id, or a Hub reference.", examples=["ds_0123abcd"]
    )
    eval_dataset: DatasetRef | None = Field(
        None, description="Triplets to evaluate on when there is no test set."
    )
    test_dataset: DatasetRef | None = Field(
        None, description="Triplets the base and fine-tuned models are scored on."
    )
    sts_dataset: DatasetRef | None = Field(
        None,
        description="Optional STS pairs (sentence1, sentence2, score in [0, 1]): an uploaded "
        "dataset of kind 'sts', or a Hub reference. Adds the Spearman and Pearson correlation "
        "of cosine similarity with the scores to the base and fine-tuned metrics.",
        examples=["ds_4d5e6f70"],
    )
    loss: Literal["mnr"] = Field("mnr", description="mnr: MultipleNegativesRankingLoss.")
    hyperparameters: HyperparametersIn = Field(default_factory=HyperparametersIn)
    name: str | None = Field(None, max_length=200, examples=["nli-mpnet"])
    metadata: dict[str, str] = Field(
        default_factory=dict,
        description="Free string labels, kept with the job.",
        examples=[{"team": "search"}],
    )
    card_examples: bool = Field(
        False,
        description=_CARD_EXAMPLES,
        examples=[False],
    )
    resources: JobResources | None = Field(
        None,
        description="The hardware the job needs: a GPU type and a device count. Null: any "
        "worker, 1 device.",
        examples=[{"gpu_type": "h100", "gpus": 2}],
    )

    @field_validator("base_model")
    @classmethod
    def _model_name(cls, value: str) -> str:
        return names.check_model_name(value)

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 50:
            raise ValueError("at most 50 metadata keys")
        for key, item in value.items():
            if not key or len(key) > 100 or len(item) > 1000:
                raise ValueError("metadata keys must be 1-100 characters, values at most 1000")
        return value


# What a job is doing (rules.phases.Phase), or the status it ended with.
JobPhase = Literal[
    "queued",
    "loading_model",
    "loading_data",
    "evaluating_base",
    "training",
    "evaluating",
    "saving",
    "succeeded",
    "failed",
    "cancelled",
]

_PHASE = (
    "What the job is doing: queued, loading_model (the worker fetches the datasets and loads the "
    "base model), loading_data, evaluating_base (scoring the base model), training (including "
    "the evaluations during training), evaluating (the fine-tuned model), saving (writing, "
    "packing and storing the model); once it ended, its status (succeeded, failed, cancelled). "
)


class Progress(BaseModel):
    step: int = Field(description="Optimisation steps done.", examples=[120])
    total_steps: int = Field(description="Steps the job will run.", examples=[6250])
    epoch: float = Field(description="Fractional epoch.", examples=[0.02])
    loss: float | None = Field(description="Latest training loss.", examples=[1.23])
    phase: JobPhase | None = Field(
        None,
        description="The job's phase when this progress was recorded, while it runs (the "
        "progress webhook and the stream carry it); the job's own `phase` is the current one.",
        examples=["training"],
    )
    steps_per_s: float | None = Field(
        None,
        description="Steps per second this attempt has trained at so far (evaluations during "
        "training included). Null before two steps were seen and once the job ended.",
        examples=[4.2],
    )
    eta_s: float | None = Field(
        None,
        description="Seconds of training left at that rate: (total_steps - step) / steps_per_s. "
        "The final evaluation and saving come after. Null when there is no rate yet and once "
        "the job ended.",
        examples=[1459.5],
    )


class JobTimings(BaseModel):
    """Where the time of a job's successful attempt went, in seconds (wall clock)."""

    queued_s: float = Field(
        description="From the moment the job (or, for a later attempt, its hand-back or the loss "
        "of its worker) was queued until a worker claimed it.",
        examples=[0.14],
    )
    loading_s: float = Field(
        description="From the claim to the base evaluation: fetching the datasets and a "
        "checkpoint to resume from, starting the training processes, loading the base model "
        "and reading the data.",
        examples=[6.3],
    )
    evaluating_base_s: float = Field(
        description="Scoring the base model before training (0 when a resumed attempt skips it).",
        examples=[1.1],
    )
    training_s: float = Field(
        description="The training steps of this attempt, without the evaluations between them.",
        examples=[95.2],
    )
    evaluating_s: float = Field(
        description="The evaluations during training plus the final one of the fine-tuned model.",
        examples=[4.8],
    )
    saving_s: float = Field(
        description="Writing the model folder and its card, packing it and storing it.",
        examples=[1.9],
    )


class JobError(BaseModel):
    code: str = Field(examples=["model_not_found"])
    message: str


class ModelArtifact(BaseModel):
    url: str = Field(examples=["/jobs/job_0123abcd/model"])
    size_bytes: int
    sha256: str


class TripletMetrics(BaseModel):
    cosine_accuracy: float = Field(
        description="Share of triplets whose anchor is more cosine-similar to the positive "
        "than to the negative.",
        examples=[0.91],
    )
    dot_accuracy: float = Field(description="The same with dot product.", examples=[0.9])
    euclidean_accuracy: float = Field(
        description="The same with euclidean distance.", examples=[0.91]
    )
    manhattan_accuracy: float = Field(
        description="The same with manhattan distance.", examples=[0.91]
    )
    max_accuracy: float = Field(description="The best of the four.", examples=[0.91])
    sts_spearman_cosine: float | None = Field(
        None,
        description="Spearman correlation of cosine similarity with the STS scores, in [-1, 1]. "
        "Null without sts_dataset (or when undefined).",
        examples=[0.82],
    )
    sts_pearson_cosine: float | None = Field(
        None,
        description="Pearson correlation of cosine similarity with the STS scores, in [-1, 1]. "
        "Null without sts_dataset (or when undefined).",
        examples=[0.8],
    )


EvaluatedOn = Literal["test", "eval", "holdout"]
_EVALUATED_ON = (
    "Which data the triplet accuracies were computed on: test_dataset ('test'), else "
    "eval_dataset ('eval'), else the rows held out of the training data ('holdout')."
)


class JobMetrics(BaseModel):
    base: TripletMetrics
    fine_tuned: TripletMetrics
    evaluated_on: EvaluatedOn | None = Field(None, description=_EVALUATED_ON)


class Holdout(BaseModel):
    """Training rows held out as the eval set, because the job has no eval_dataset."""

    rows: int = Field(description="Rows held out (and not trained on).", examples=[163])
    share: float = Field(
        description="The share of the training rows aimed at: 5%, at least 1 row and at most "
        "1000. Held out by anchor: every row of a held-out anchor (ignoring case and "
        "surrounding spaces) is held out, so no held-out anchor is trained on and `rows` can "
        "fall short of 5% when anchors repeat; when every anchor has more rows than that, one "
        "anchor is held out if it has at most 20% of the rows. Nothing is held out of fewer "
        "than 20 rows.",
        examples=[0.05],
    )
    seed: int = Field(description="The seed that picked them (the job's seed).", examples=[42])


class JobPreflightFinding(BaseModel):
    code: str = Field(
        description="train_test_overlap, train_eval_overlap, batch_false_negatives, "
        "truncated_texts, or (only in a 422 preflight_failed) too_few_train_rows.",
        examples=["train_test_overlap"],
    )
    severity: Literal["warning", "error"] = Field(
        description="error: the job was rejected (422 preflight_failed); warning: stored on "
        "the job.",
        examples=["warning"],
    )
    count: int = Field(description="Rows concerned.", examples=[12])
    message: str = Field(description="Why it matters and what to do.")
    examples: list[dict[str, Any]] = Field(
        description="Up to 3 rows. Overlap: {row (1-based row of the test/eval file), texts, "
        "match ('row' or 'anchor'), same_as_train_row}; truncated_texts: {role, row, column, "
        "tokens, text (shortened)}."
    )
    details: dict[str, Any] | None = Field(
        None,
        description="Overlap: {rows (whole training rows), anchors (training anchors), of}; "
        "batch_false_negatives: {batch_size, batches_per_epoch, "
        "expected_batches_without_sampler}; truncated_texts: {max_seq_length, roles: {role: "
        "{truncated, texts, share}}} for the datasets above the 1% threshold.",
    )


class TokenLengths(BaseModel):
    """Token counts of one dataset's texts (every text column), special tokens included."""

    rows: int = Field(description="Rows in the dataset.", examples=[3253])
    sampled_rows: int = Field(
        description="Rows tokenized: the first sample_rows of the dataset.", examples=[3253]
    )
    texts: int = Field(description="Texts tokenized (rows x text columns).", examples=[9759])
    min: int | None = Field(description="Shortest text, in tokens.", examples=[6])
    p50: int | None = Field(description="Median length (nearest rank).", examples=[14])
    p90: int | None = Field(description="90th percentile (nearest rank).", examples=[24])
    p99: int | None = Field(description="99th percentile (nearest rank).", examples=[40])
    max: int | None = Field(description="Longest text, in tokens.", examples=[87])
    truncated: int | None = Field(
        description="Texts longer than max_seq_length (null when the max length is unknown).",
        examples=[0],
    )
    truncated_share: float | None = Field(
        description="truncated / texts, rounded to 4 digits.", examples=[0.0]
    )


class JobPreflightTokens(BaseModel):
    """Token lengths under the base model's tokenizer and the max length the worker will use."""

    base_model: str = Field(examples=["all-MiniLM-L6-v2"])
    max_seq_length: int | None = Field(
        description="The max length the job trains with: hyperparameters.max_seq_length (capped "
        "at the model's position embeddings), else the model's own. Null when unknown.",
        examples=[256],
    )
    max_seq_length_source: str | None = Field(
        description="Where max_seq_length comes from: hyperparameters, "
        "sentence_bert_config.json, tokenizer_config.json or config.json.",
        examples=["sentence_bert_config.json"],
    )
    sample_rows: int = Field(
        description="At most this many rows of each dataset are tokenized (the first ones).",
        examples=[10000],
    )
    roles: dict[str, TokenLengths] = Field(
        description="Per uploaded dataset: train, eval, test (Hub datasets are not read)."
    )


class JobPreflight(BaseModel):
    """The job-time preflight report, computed from the uploaded datasets at POST /jobs."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "steps": 288,
                    "train_rows": 570,
                    "holdout_rows": 30,
                    "tokens": {
                        "base_model": "all-MiniLM-L6-v2",
                        "max_seq_length": 256,
                        "max_seq_length_source": "sentence_bert_config.json",
                        "sample_rows": 10000,
                        "roles": {
                            "train": {
                                "rows": 600,
                                "sampled_rows": 600,
                                "texts": 1800,
                                "min": 5,
                                "p50": 13,
                                "p90": 22,
                                "p99": 38,
                                "max": 61,
                                "truncated": 0,
                                "truncated_share": 0.0,
                            }
                        },
                    },
                    "findings": [
                        {
                            "code": "train_test_overlap",
                            "severity": "warning",
                            "count": 2,
                            "message": "2 of the 200 test rows overlap the training data ...",
                            "examples": [
                                {
                                    "row": 7,
                                    "texts": {
                                        "anchor": "A man plays a guitar.",
                                        "positive": "A person makes music.",
                                        "negative": "A cat sleeps.",
                                    },
                                    "match": "row",
                                    "same_as_train_row": 31,
                                }
                            ],
                            "details": {"rows": 1, "anchors": 2, "of": 200},
                        }
                    ],
                    "skipped": [],
                }
            ]
        }
    )

    steps: int | None = Field(
        description="Optimisation steps the job will run: max_steps, else ceil(train_rows / "
        "batch_size) * epochs. Null when the training data is on the Hub.",
        examples=[288],
    )
    train_rows: int | None = Field(
        None, description="Rows trained on (after any hold-out).", examples=[570]
    )
    holdout_rows: int | None = Field(
        None,
        description="Rows the worker will hold out as the eval set (no eval_dataset), by "
        "anchor: exactly the rows it will hold out.",
        examples=[30],
    )
    tokens: JobPreflightTokens | None = Field(
        None,
        description="Token lengths of the uploaded datasets under the base model's tokenizer. "
        "Null when the API cannot read the tokenizer (see skipped) or nothing was uploaded.",
    )
    findings: list[JobPreflightFinding]
    skipped: list[dict[str, str]] = Field(
        default_factory=list,
        description="Parts not checked: {field, reason}: Hub datasets; base_model when its "
        "tokenizer is not readable by the API (a Hub model not in the local cache, no "
        "tokenizer.json).",
    )


class JobRead(BaseModel):
    id: str = Field(examples=["job_0123abcd"])
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    name: str | None
    base_model: str
    train_dataset: DatasetRef
    eval_dataset: DatasetRef | None
    test_dataset: DatasetRef | None
    sts_dataset: DatasetRef | None = Field(
        None, description="STS pairs scored with Spearman/Pearson correlation, if any."
    )
    holdout: Holdout | None = Field(
        None,
        description="Set once the job ran without eval_dataset: how many training rows were "
        "held out (seeded, not trained on) to evaluate on. Null when nothing was held out.",
    )
    preflight: JobPreflight | None = Field(
        None,
        description="Checks run on the uploaded datasets when the job was created: the steps "
        "it will run, train/test and train/eval overlap, shared positives within a batch. "
        "Warnings only (errors reject the job with 422 preflight_failed). Null for jobs created "
        "before the report existed.",
    )
    loss: str
    hyperparameters: dict[str, Any] = Field(description="Every value resolved, defaults filled in.")
    metadata: dict[str, str]
    card_examples: bool = Field(False, description=_CARD_EXAMPLES)
    resources: JobResources = Field(
        default_factory=JobResources,
        description="The hardware the job asked for, defaults filled in (any type: null).",
    )
    queue: JobQueue | None = Field(
        None,
        description="While the job is queued: its queue, its place there and the live workers "
        "taking that queue. Null once it has started or ended.",
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: Progress | None
    metrics: JobMetrics | None = Field(
        description="Triplet accuracy of the base and the fine-tuned model on the test data, "
        "else the eval data, else the held-out rows (when they are triplets); plus STS "
        "correlations with sts_dataset. GET /jobs/{id}/metrics has the time series."
    )
    error: JobError | None
    model: ModelArtifact | None
    attempt: int = Field(
        0, description="Attempts started so far (a job resumes after a lost or stopped worker)."
    )
    cancel_requested_at: datetime | None = Field(
        None, description="When a cancel was requested; a running job stops at its next step."
    )
    checkpoint_step: int | None = Field(
        None, description="Step of the latest checkpoint a later attempt would resume from."
    )
    hub_revisions: dict[str, str] | None = Field(
        None,
        description="Once the job ran: dataset field -> the Hub commit its Hub dataset resolved "
        "to (whatever `revision` pinned, or the default branch).",
        examples=[{"train_dataset": "d81f2bbd4b8c1a7e5d0c5b1e8a3f0e6c9b2a4d71"}],
    )
    phase: JobPhase | None = Field(
        None,
        description=_PHASE + " A job from before phases were recorded shows queued or its "
        "status, and null while it runs (nothing measured which phase it is in).",
        examples=["training"],
    )
    timings: JobTimings | None = Field(
        None,
        description="Once the job succeeded: where the time of the attempt that succeeded went, "
        "in seconds (the model card has the same figures). Null before, and for jobs that "
        "failed or were cancelled.",
    )
    throughput: float | None = Field(
        None,
        description="Once the job succeeded: training samples per second, the rows of the steps "
        "this attempt trained (steps x batch_size) over timings.training_s. A resumed attempt "
        "counts only the steps it ran itself.",
        examples=[8250.0],
    )


class JobList(BaseModel):
    data: list[JobRead]
    has_more: bool
    next_cursor: str | None = Field(description="Pass as ?cursor= to get the next page.")


class TrainPoint(BaseModel):
    step: int = Field(description="Optimisation step the loss was logged at.", examples=[30])
    epoch: float = Field(description="Fractional epoch.", examples=[0.1])
    loss: float | None = Field(
        description="Mean training loss (MNR) since the previous logged step.", examples=[1.42]
    )
    learning_rate: float | None = Field(
        description="Learning rate at this step.", examples=[1.8e-5]
    )
    grad_norm: float | None = Field(
        None, description="Gradient norm before clipping, when the trainer reports it."
    )


class EvalPoint(BaseModel):
    step: int = Field(description="Step evaluated after; 0 is the base model.", examples=[0])
    epoch: float = Field(description="Fractional epoch.", examples=[0.0])
    loss: float | None = Field(description="MNR loss on the eval set.", examples=[1.87])
    cosine_accuracy: float | None = Field(
        None, description="Triplet accuracies on the eval set; null when it has no negatives."
    )
    dot_accuracy: float | None = None
    euclidean_accuracy: float | None = None
    manhattan_accuracy: float | None = None
    max_accuracy: float | None = None


class MetricsDifference(BaseModel):
    """fine_tuned - base for every metric both have (null otherwise)."""

    cosine_accuracy: float | None = Field(None, examples=[0.12])
    dot_accuracy: float | None = None
    euclidean_accuracy: float | None = None
    manhattan_accuracy: float | None = None
    max_accuracy: float | None = None
    sts_spearman_cosine: float | None = None
    sts_pearson_cosine: float | None = None


class FinalMetrics(BaseModel):
    base: TripletMetrics = Field(description="The base model, before training.")
    fine_tuned: TripletMetrics = Field(description="The fine-tuned model.")
    difference: MetricsDifference = Field(description="fine_tuned - base, per metric.")
    evaluated_on: EvaluatedOn | None = Field(None, description=_EVALUATED_ON)


class JobMetricsSeries(BaseModel):
    """A job's training time series and its final base vs fine-tuned metrics."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job_id": "job_0123abcd",
                    "status": "succeeded",
                    "total_steps": 300,
                    "train": [
                        {
                            "step": 3,
                            "epoch": 0.04,
                            "loss": 2.61,
                            "learning_rate": 2e-4,
                            "grad_norm": 4.5,
                        }
                    ],
                    "eval": [
                        {
                            "step": 0,
                            "epoch": 0.0,
                            "loss": 2.14,
                            "cosine_accuracy": 0.62,
                            "dot_accuracy": 0.6,
                            "euclidean_accuracy": 0.61,
                            "manhattan_accuracy": 0.61,
                            "max_accuracy": 0.62,
                        }
                    ],
                    "final": {
                        "base": {
                            "cosine_accuracy": 0.6,
                            "dot_accuracy": 0.58,
                            "euclidean_accuracy": 0.6,
                            "manhattan_accuracy": 0.6,
                            "max_accuracy": 0.6,
                            "sts_spearman_cosine": 0.41,
                            "sts_pearson_cosine": 0.4,
                        },
                        "fine_tuned": {
                            "cosine_accuracy": 0.72,
                            "dot_accuracy": 0.7,
                            "euclidean_accuracy": 0.71,
                            "manhattan_accuracy": 0.71,
                            "max_accuracy": 0.72,
                            "sts_spearman_cosine": 0.55,
                            "sts_pearson_cosine": 0.53,
                        },
                        "difference": {
                            "cosine_accuracy": 0.12,
                            "dot_accuracy": 0.12,
                            "euclidean_accuracy": 0.11,
                            "manhattan_accuracy": 0.11,
                            "max_accuracy": 0.12,
                            "sts_spearman_cosine": 0.14,
                            "sts_pearson_cosine": 0.13,
                        },
                        "evaluated_on": "test",
                    },
                }
            ]
        }
    )

    job_id: str = Field(examples=["job_0123abcd"])
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    total_steps: int | None = Field(
        description="Steps the job runs, once it has started.", examples=[300]
    )
    train: list[TrainPoint] = Field(
        description="The training loss at every logging step (and the last step), by step. "
        "Grows while the job runs."
    )
    eval: list[EvalPoint] = Field(
        description="Evaluations on the eval set (or the hold-out), by step: step 0 is the base "
        "model, then every eval_steps steps and the last step. Empty without an eval set."
    )
    final: FinalMetrics | None = Field(
        description="Base vs fine-tuned metrics and their difference; null until the job has "
        "metrics."
    )


class JobEventRead(BaseModel):
    id: int = Field(
        description="The event's position in this job's timeline: 1, 2, 3, ... (a job's own "
        "count, telling nothing of other jobs).",
        examples=[4],
    )
    type: Literal[
        "queued",
        "started",
        "checkpoint_saved",
        "evaluated",
        "retried",
        "cancel_requested",
        "cancelled",
        "failed",
        "succeeded",
    ]
    at: datetime
    attempt: int | None = Field(description="The attempt the event belongs to (0: none yet).")
    data: dict[str, Any] = Field(
        description="By type: started {resumed_from_step}; checkpoint_saved {step}; "
        "evaluated {step, metrics}; retried {reason: worker_lost | handed_back, step}; "
        "failed {code}; cancelled {reason}; succeeded {sha256, total_steps}.",
        examples=[{"step": 500}],
    )

    @classmethod
    def of(cls, position: int, event: JobEvent) -> JobEventRead:
        """Event `event` as clients see it, at `position` in its job's timeline (its id)."""
        return cls(
            id=position,
            type=event.type,  # type: ignore[arg-type]
            at=event.created_at,
            attempt=event.attempt,
            data=event.data,
        )


class JobEventList(BaseModel):
    data: list[JobEventRead]
    has_more: bool
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the events after this page. Set whenever the page is "
        "not empty, so a client can poll for new events with the last cursor it got."
    )
