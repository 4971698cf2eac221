"""Request and response shapes of /jobs, split by role: create, read, list."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Precision = Literal["auto", "fp32", "fp16", "bf16"]

# Hub ids look like `org/name` or `name`; local model names are folder names inside a model
# directory (nested like `org/name` is fine). Never a path a client controls.
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")


class HubDatasetRef(BaseModel):
    """A dataset on the Hugging Face Hub, loaded with `datasets.load_dataset` by the worker."""

    model_config = ConfigDict(
        extra="forbid",
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
        description="Hub dataset id.",
        examples=["sentence-transformers/all-nli"],
    )
    config: str | None = Field(
        None, max_length=100, description="Dataset configuration.", examples=["triplet"]
    )
    split: str = Field(
        "train",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Split to load.",
        examples=["train"],
    )
    limit: int | None = Field(
        None, ge=1, description="Use only the first N rows of the split.", examples=[100000]
    )
    revision: str | None = Field(
        None, max_length=100, description="Git revision (branch, tag or commit) to pin."
    )


DatasetRef = str | HubDatasetRef


class HyperparametersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(1, ge=1, le=100, description="Passes over the training data.")
    batch_size: int = Field(
        16,
        ge=2,
        le=4096,
        description="Pairs per batch. MNR uses every other row of a batch as a negative, "
        "so larger batches usually train better.",
    )
    learning_rate: float = Field(2e-5, gt=0, le=1, description="Peak AdamW learning rate.")
    warmup_ratio: float = Field(
        0.1, ge=0, lt=1, description="Share of steps with a linearly rising learning rate."
    )
    max_seq_length: int | None = Field(
        None,
        ge=8,
        le=8192,
        description="Tokens per text before truncation. Null: the base model's own.",
    )
    seed: int = Field(42, ge=0, le=2**31 - 1, description="Random seed.")
    precision: Precision = Field(
        "auto",
        description="auto: bf16 on GPUs that support it, fp16 on other GPUs, fp32 on CPU.",
    )
    max_steps: int | None = Field(
        None, ge=1, le=10_000_000, description="Stop after this many steps (overrides epochs)."
    )


class JobCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
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
        description="A Hugging Face Hub id, or the name of a folder inside one of the "
        "directories in EMBEDTUNE_MODEL_DIRS. Never a filesystem path.",
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
    loss: Literal["mnr"] = Field("mnr", description="mnr: MultipleNegativesRankingLoss.")
    hyperparameters: HyperparametersIn = Field(default_factory=HyperparametersIn)
    name: str | None = Field(None, max_length=200, examples=["nli-mpnet"])
    metadata: dict[str, str] = Field(
        default_factory=dict,
        description="Free string labels, kept with the job.",
        examples=[{"team": "search"}],
    )

    @field_validator("base_model")
    @classmethod
    def _model_name(cls, value: str) -> str:
        parts = value.split("/")
        if not _MODEL_NAME.match(value) or any(p in {".", ".."} for p in parts):
            raise ValueError(
                "must be a Hugging Face Hub id like 'org/name' or a model folder name; "
                "paths, '..' and absolute names are not accepted"
            )
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 50:
            raise ValueError("at most 50 metadata keys")
        for key, item in value.items():
            if not key or len(key) > 100 or len(item) > 1000:
                raise ValueError("metadata keys must be 1-100 characters, values at most 1000")
        return value


class Progress(BaseModel):
    step: int = Field(description="Optimisation steps done.", examples=[120])
    total_steps: int = Field(description="Steps the job will run.", examples=[6250])
    epoch: float = Field(description="Fractional epoch.", examples=[0.02])
    loss: float | None = Field(description="Latest training loss.", examples=[1.23])


class JobError(BaseModel):
    code: str = Field(examples=["model_not_found"])
    message: str


class ModelArtifact(BaseModel):
    url: str = Field(examples=["/jobs/job_0123abcd/model"])
    size_bytes: int
    sha256: str


class TripletMetrics(BaseModel):
    cosine_accuracy: float
    dot_accuracy: float
    euclidean_accuracy: float
    manhattan_accuracy: float
    max_accuracy: float


class JobMetrics(BaseModel):
    base: TripletMetrics
    fine_tuned: TripletMetrics
    evaluated_on: Literal["test", "eval"] | None = Field(
        None, description="Which data the metrics were computed on: test_dataset or eval_dataset."
    )


class JobRead(BaseModel):
    id: str = Field(examples=["job_0123abcd"])
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    name: str | None
    base_model: str
    train_dataset: DatasetRef
    eval_dataset: DatasetRef | None
    test_dataset: DatasetRef | None
    loss: str
    hyperparameters: dict[str, Any] = Field(description="Every value resolved, defaults filled in.")
    metadata: dict[str, str]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: Progress | None
    metrics: JobMetrics | None = Field(
        description="Triplet accuracy on the test data (or the eval data when there is none)."
    )
    error: JobError | None
    model: ModelArtifact | None


class JobList(BaseModel):
    data: list[JobRead]
    has_more: bool
    next_cursor: str | None = Field(description="Pass as ?cursor= to get the next page.")
