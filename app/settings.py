"""One Settings class, read from EMBEDTUNE_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATA_DIR = Path("./embedtune-data")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMBEDTUNE_", extra="ignore")

    data_dir: Path = Field(
        DEFAULT_DATA_DIR, description="Uploaded datasets, model artifacts and (locally) SQLite."
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
    max_upload_bytes: int = Field(
        1024 * 1024 * 1024, gt=0, description="Largest accepted dataset upload, in bytes."
    )
    worker_concurrency: int = Field(1, ge=1, description="Jobs one worker host runs at once.")
    progress_interval_s: float = Field(
        1.0, gt=0, description="Least time between two progress writes of a running job."
    )

    @field_validator("model_dirs", mode="before")
    @classmethod
    def _split_model_dirs(cls, value: object) -> object:
        if isinstance(value, str):
            return [Path(part) for part in value.split(":") if part.strip()]
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'embedtune.db').resolve()}"

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"


@lru_cache
def get_settings() -> Settings:
    return Settings()
