"""One Settings class, read from EMBEDTUNE_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.routing import GPUS_CAP, check_gpu_type

DEFAULT_DATA_DIR = Path("./embedtune-data")

# Absolute caps on job hyperparameters, the job schema's bounds. The EMBEDTUNE_MAX_* settings
# and a team's own limits (app.limits) can only tighten them.
EPOCHS_CAP = 100
STEPS_CAP = 10_000_000
BATCH_SIZE_CAP = 4096
SEQ_LENGTH_CAP = 8192
# The umask of every Embedtune process: files and folders it makes are the service user's only.
PRIVATE_UMASK = 0o077


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMBEDTUNE_", extra="ignore")

    data_dir: Path = Field(
        DEFAULT_DATA_DIR,
        description="This process's scratch space (partial uploads, job work folders, cached "
        "datasets) and, in the default setup, the store and the SQLite database too.",
    )
    storage_url: str | None = Field(
        None,
        description="Where datasets, checkpoints and models are kept: `file:///abs/path` or "
        "`s3://bucket[/prefix]` (any S3-compatible store; credentials and region from the "
        "standard AWS environment variables and credential chain). Default: the data dir "
        "itself (`file://<data dir>`), for one machine. With several machines every API and "
        "worker process must name the same store.",
    )
    s3_endpoint_url: str | None = Field(
        None,
        description="Endpoint of a non-AWS S3-compatible store (MinIO, Ceph RGW, R2), e.g. "
        "`http://minio:9000`. Unset: AWS S3.",
    )
    download_redirect: bool = Field(
        False,
        description="GET /jobs/{id}/model answers 307 to a short-lived presigned URL of the "
        "store instead of streaming the model through the API (S3 stores only; a folder store "
        "always streams).",
    )
    download_url_ttl_s: int = Field(
        300,
        ge=10,
        le=7 * 24 * 3600,
        description="How long a presigned model download URL stays valid, in seconds.",
    )
    storage_retry_s: float = Field(
        120.0,
        gt=0,
        description="How long a worker keeps retrying a store that fails before it fails the "
        "job with storage_unavailable.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL. Default: SQLite file `embedtune.db` in the data dir.",
    )
    broker_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Celery broker. `filesystem://PATH` uses a folder and needs no server.",
    )
    queue: str = Field("embedtune", description="Celery queue the jobs are sent to.")
    # Colon-separated (like PATH) in the environment; NoDecode keeps pydantic from expecting JSON.
    model_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="Directories whose sub-folders are usable base models."
    )
    # Limits: every team's defaults; a team's own `limits` override them (app.limits).
    max_upload_bytes: int = Field(
        1024 * 1024 * 1024,
        gt=0,
        description="Largest accepted dataset file, in bytes: 413 above it, checked against "
        "Content-Length and counted while the upload streams in.",
    )
    max_dataset_rows: int = Field(
        10_000_000,
        ge=1,
        description="Most data rows in one dataset (and triplets made from NLI pairs): 422 "
        "dataset_too_large above it.",
    )
    max_text_chars: int = Field(
        100_000,
        ge=1,
        description="Longest text in one cell of an uploaded dataset, in characters: 422 "
        "naming the row and column above it (JSONL, CSV and Parquet alike).",
    )
    max_dataset_uncompressed_bytes: int = Field(
        4 * 1024 * 1024 * 1024,
        gt=0,
        description="Largest uncompressed size of one uploaded dataset's data, in bytes: a "
        "Parquet file declaring more in its metadata is refused (422 dataset_too_large) "
        "before any of it is read, and text files are counted as they are read.",
    )
    max_json_bytes: int = Field(
        1024 * 1024,
        gt=0,
        description="Largest JSON request body, in bytes: 413 payload_too_large, counted "
        "while the body streams in (with or without Content-Length).",
    )
    auth_failures_per_minute: int = Field(
        20,
        ge=1,
        description="Failed authentications (API keys and the admin token alike) one client "
        "address may make in a minute before it gets 429 with Retry-After.",
    )
    auth_cache_s: float = Field(
        2.0,
        ge=0,
        le=60,
        description="Seconds an API process may answer from its memory of a valid API key "
        "(and its team's limits) without asking the database: a key revoked through another "
        "process (or machine) stops working within this bound; revoked through the same "
        "process, at once. 0: every request checks its key in the database.",
    )
    uploads_per_team: int = Field(
        4,
        ge=1,
        description="Uploads one team may have in progress at once in one API process: 429 "
        "with Retry-After above it, so one team cannot starve the others.",
    )
    max_active_jobs: int = Field(
        10,
        ge=1,
        description="Most queued + running jobs of one team: POST /jobs answers 429 "
        "too_many_active_jobs (with Retry-After) at the limit.",
    )
    max_epochs: int = Field(
        EPOCHS_CAP, ge=1, le=EPOCHS_CAP, description="Largest hyperparameters.epochs of a job."
    )
    max_steps: int = Field(
        STEPS_CAP, ge=1, le=STEPS_CAP, description="Largest hyperparameters.max_steps of a job."
    )
    max_batch_size: int = Field(
        BATCH_SIZE_CAP,
        ge=2,
        le=BATCH_SIZE_CAP,
        description="Largest hyperparameters.batch_size of a job.",
    )
    max_seq_length: int = Field(
        SEQ_LENGTH_CAP,
        ge=8,
        le=SEQ_LENGTH_CAP,
        description="Largest hyperparameters.max_seq_length of a job (a job that sets none "
        "uses its base model's own).",
    )
    worker_concurrency: int = Field(1, ge=1, description="Jobs one worker host runs at once.")
    # Routing (app.routing). Comma-separated in the environment; NoDecode as for model_dirs.
    gpu_types: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="The GPU types this deployment's workers have, comma-separated "
        "(`a100,h100`): the values a job's resources.gpu_type may take. Empty: the deployment "
        "names no types, so a job cannot ask for one (422) and runs on any worker.",
    )
    max_gpus_per_job: int = Field(
        8,
        ge=1,
        le=GPUS_CAP,
        description="Most devices one job may ask for (resources.gpus): 422 above it.",
    )
    worker_gpu_type: str | None = Field(
        None,
        description="This worker's GPU type (`embedtune worker --gpu-type`): it then also takes "
        "the jobs that ask for that type. Unset: only jobs that ask for no type.",
    )
    worker_gpus: int | None = Field(
        None,
        ge=1,
        le=GPUS_CAP,
        description="Devices this worker has (`embedtune worker --gpus`): it takes jobs asking "
        "for up to this many. Unset: the visible CUDA devices, 1 on a host without CUDA.",
    )
    progress_interval_s: float = Field(
        1.0, gt=0, description="Least time between two progress writes of a running job."
    )

    lease_s: float = Field(
        30.0,
        gt=0,
        description="How long a running job's lease lasts; its worker renews it every "
        "lease_s / 3 seconds. A job whose worker died is taken back after at most "
        "lease_s + sweep_interval_s.",
    )
    sweep_interval_s: float = Field(
        15.0, gt=0, description="How often the API looks for expired leases and lost messages."
    )
    max_attempts: int = Field(
        3, ge=1, description="Attempts a job gets before a lost worker fails it (worker_lost)."
    )
    redispatch_after_s: float = Field(
        600.0,
        gt=0,
        description="A queued job is sent to the broker again when it has waited this long "
        "since its last send (a broker restarted without persistence loses messages).",
    )
    checkpoint_every_steps: int | None = Field(
        None, ge=1, description="Checkpoint a running job every N steps (besides the timer)."
    )
    checkpoint_every_s: float = Field(
        300.0, gt=0, description="Checkpoint a running job at least this often, in seconds."
    )
    max_time_limit_s: int = Field(
        7 * 24 * 3600,
        ge=1,
        description="Largest per-job time limit (hyperparameter time_limit_s), and the "
        "limit of a job that sets none.",
    )
    idempotency_ttl_s: int = Field(
        24 * 3600, ge=3600, description="How long an Idempotency-Key's response is kept."
    )
    stream_poll_s: float = Field(
        0.5,
        gt=0,
        le=60,
        description="How often GET /jobs/{id}/stream looks at the database for new events.",
    )
    stream_keepalive_s: float = Field(
        15.0,
        gt=0,
        description="Seconds between keep-alive comments on GET /jobs/{id}/stream, so proxies "
        "do not cut a quiet stream.",
    )
    webhook_allow_private_urls: bool = Field(
        False,
        description="Allow webhook URLs that resolve to loopback, link-local or private "
        "addresses (refused by default: a webhook must not reach the service's own network).",
    )
    webhook_progress_interval_s: float = Field(
        30.0, gt=0, description="Least time between two job.progress webhooks of one job."
    )
    webhook_send_interval_s: float = Field(
        1.0, gt=0, description="How often the API looks for webhook deliveries that are due."
    )
    webhook_retry_base_s: float = Field(
        5.0,
        gt=0,
        description="First retry delay of a failed webhook delivery; later ones grow "
        "(x6, x24, x120, x360, x720, then every x1440) until webhook_retry_for_s has passed.",
    )
    webhook_retry_for_s: float = Field(
        25 * 3600.0,
        gt=0,
        description="How long a webhook delivery is retried after it was created before it "
        "is marked failed.",
    )
    admin_token: SecretStr | None = Field(
        None,
        description="Bearer token of the admin endpoints (/admin/...: teams and API keys). "
        "Unset: the admin endpoints answer 403 admin_disabled; use `embedtune keys` instead.",
    )

    metrics_token: SecretStr | None = Field(
        None,
        description="Bearer token GET /metrics requires (401 without it). Unset: /metrics is "
        "open, like /health.",
    )
    worker_metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port on which each worker serves its own Prometheus metrics (running jobs, "
        "job durations, training throughput, CUDA memory). Unset: no worker metrics server.",
    )
    worker_heartbeat_s: float = Field(
        10.0,
        gt=0,
        description="How often a worker records that it is alive; /health counts a worker seen "
        "within three heartbeats as alive.",
    )
    health_cache_s: float = Field(
        1.0,
        ge=0,
        le=60,
        description="Seconds an API process answers GET /health from its last checks (database, "
        "broker, object store, workers) before it checks again; concurrent requests share one "
        "check. An outage or a change of workers shows within this plus the checks' own time "
        "(at most 3 s for the broker, 4 s for the store). 0: every request checks.",
    )

    @field_validator("model_dirs", mode="before")
    @classmethod
    def _split_model_dirs(cls, value: object) -> object:
        if isinstance(value, str):
            return [Path(part) for part in value.split(":") if part.strip()]
        return value

    @field_validator("gpu_types", mode="before")
    @classmethod
    def _split_gpu_types(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("gpu_types")
    @classmethod
    def _check_gpu_types(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(check_gpu_type(name) for name in value))

    @field_validator("worker_gpu_type", "worker_gpus", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `EMBEDTUNE_WORKER_GPUS=` (say, from a compose file's `${VAR:-}`) means unset.
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'embedtune.db').resolve()}"

    @property
    def resolved_storage_url(self) -> str:
        if self.storage_url:
            return self.storage_url
        return f"file://{self.data_dir.resolve()}"

    @property
    def scratch_dir(self) -> Path:
        """This process's own scratch space: partial uploads, job work folders, cached copies
        of datasets. Nothing in it is needed by another process or machine."""
        return self.data_dir / "scratch"


@lru_cache
def get_settings() -> Settings:
    return Settings()
