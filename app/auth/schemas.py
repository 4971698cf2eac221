"""Request and response shapes of /admin: teams and their API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

TEAM_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
TEAM_NAME_MAX = 100


class TeamCreate(BaseModel):
    name: str = Field(
        min_length=1,
        max_length=TEAM_NAME_MAX,
        pattern=TEAM_NAME_PATTERN,
        description="Unique team name: letters, digits, `.`, `_`, `-`.",
        examples=["search-platform"],
    )


class TeamLimits(BaseModel):
    """A team's own limits; a field left null uses the server's setting."""

    model_config = ConfigDict(extra="forbid", strict=True)

    max_active_jobs: int | None = Field(None, ge=1, description="Queued + running jobs.")
    max_upload_bytes: int | None = Field(None, ge=1, description="Bytes of one dataset file.")
    max_dataset_rows: int | None = Field(None, ge=1, description="Rows of one dataset.")
    max_text_chars: int | None = Field(
        None, ge=1, description="Characters of one text cell of a dataset."
    )
    max_dataset_uncompressed_bytes: int | None = Field(
        None, ge=1, description="Bytes of one dataset's data, uncompressed."
    )
    max_epochs: int | None = Field(None, ge=1, description="Capped at 100.")
    max_steps: int | None = Field(None, ge=1, description="Capped at 10,000,000.")
    max_batch_size: int | None = Field(None, ge=1, description="Capped at 4096.")
    max_seq_length: int | None = Field(None, ge=1, description="Capped at 8192.")


class TeamRead(BaseModel):
    id: str = Field(description="Team id.", examples=["team_6b1f0c2e9a7d4c3a8e6f0b1d"])
    name: str = Field(description="Unique team name.", examples=["search-platform"])
    limits: dict[str, Any] | None = Field(
        None, description="Per-team overrides of the server's limits; null: the defaults."
    )
    created_at: datetime


class TeamList(BaseModel):
    data: list[TeamRead]


class ApiKeyRead(BaseModel):
    id: str = Field(description="Key id, for revoking.", examples=["key_9a1b2c3d4e5f60718293a4b5"])
    team_id: str = Field(examples=["team_6b1f0c2e9a7d4c3a8e6f0b1d"])
    prefix: str = Field(
        description="The visible start of the key, to recognise it; the rest is secret.",
        examples=["et_3f9c1e0a"],
    )
    created_at: datetime
    revoked_at: datetime | None = Field(None, description="Set once the key is revoked.")
    last_used_at: datetime | None = Field(
        None, description="Last authenticated request (to the minute)."
    )


class ApiKeyList(BaseModel):
    data: list[ApiKeyRead]


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(
        description="The whole key, shown only in this response: only its hash is stored. "
        "Send it as `Authorization: Bearer <key>`.",
        examples=["et_3f9c1e0a_Vh2kq8b0Zr1m0A6yJm3q0sXwq6bqzU7yTt8kV1rPq3w"],
    )
