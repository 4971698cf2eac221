"""Typed views of the API's responses. Lenient on purpose: fields the server adds later are
kept (extra="allow") rather than refused, so an older client keeps working."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
TERMINAL_EVENTS: frozenset[str] = TERMINAL_STATUSES


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class Dataset(_Model):
    """An uploaded dataset (POST /datasets, GET /datasets/{id})."""

    id: str
    name: str
    format: str
    kind: str
    columns: list[str] = []
    rows: int
    size_bytes: int
    sha256: str
    created_at: datetime
    column_mapping: dict[str, str] | None = None
    preflight: dict[str, Any] | None = None


class DatasetList(_Model):
    """A page of GET /datasets. An API from before paging answers every dataset at once,
    without `has_more`: read as the only page."""

    data: list[Dataset]
    has_more: bool = False
    next_cursor: str | None = None


class Progress(_Model):
    """A running job's progress. `phase` (the phase when it was recorded), `steps_per_s` and
    `eta_s` (seconds of training left) are set by servers that report them."""

    step: int
    total_steps: int
    epoch: float
    loss: float | None = None
    phase: str | None = None
    steps_per_s: float | None = None
    eta_s: float | None = None


class JobTimings(_Model):
    """Where the time of a succeeded job's attempt went, in seconds."""

    queued_s: float
    loading_s: float
    evaluating_base_s: float
    training_s: float
    evaluating_s: float
    saving_s: float


class JobErrorInfo(_Model):
    code: str
    message: str


class ModelArtifact(_Model):
    url: str
    size_bytes: int
    sha256: str


class JobResources(_Model):
    """The hardware a job asked for: a GPU type (None: any) and a device count."""

    gpu_type: str | None = None
    gpus: int = 1


class JobQueue(_Model):
    """Where a queued job waits: its queue, its place there (1 = next) and the live workers
    taking that queue; `message` says why it waits when there are none."""

    name: str
    position: int
    workers: int
    message: str | None = None


class Job(_Model):
    """A fine-tuning job (GET /jobs/{id}). Datasets are ids (str) or Hub references (dict).
    `queue` is set while the job is queued (servers without routing: never)."""

    id: str
    status: JobStatus
    name: str | None = None
    base_model: str
    train_dataset: str | dict[str, Any]
    eval_dataset: str | dict[str, Any] | None = None
    test_dataset: str | dict[str, Any] | None = None
    sts_dataset: str | dict[str, Any] | None = None
    hyperparameters: dict[str, Any] = {}
    metadata: dict[str, str] = {}
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: Progress | None = None
    metrics: dict[str, Any] | None = None
    error: JobErrorInfo | None = None
    model: ModelArtifact | None = None
    attempt: int = 0
    cancel_requested_at: datetime | None = None
    resources: JobResources = JobResources()
    queue: JobQueue | None = None
    # What the job is doing (queued, loading_model, ..., saving) or the status it ended with;
    # timings and throughput (training samples/s) once it succeeded.
    phase: str | None = None
    timings: JobTimings | None = None
    throughput: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


class JobList(_Model):
    data: list[Job]
    has_more: bool
    next_cursor: str | None = None


class JobEvent(_Model):
    """One entry of a job's timeline; `id` is its position (1, 2, 3, ...) in the job."""

    id: int
    type: str
    at: datetime
    attempt: int | None = None
    data: dict[str, Any] = {}

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_EVENTS


class JobEventList(_Model):
    data: list[JobEvent]
    has_more: bool
    next_cursor: str | None = None


class ProgressUpdate(_Model):
    """A live progress message of `jobs.stream()`: the job's status and progress now."""

    status: JobStatus
    progress: Progress | None = None


class JobMetrics(_Model):
    """GET /jobs/{id}/metrics: loss and eval curves (lists of points, as dicts) and, once the
    job has them, the base vs fine-tuned metrics with their difference (`final`)."""

    job_id: str
    status: JobStatus
    total_steps: int | None = None
    train: list[dict[str, Any]] = []
    eval: list[dict[str, Any]] = []
    final: dict[str, Any] | None = None


StreamItem = JobEvent | ProgressUpdate
