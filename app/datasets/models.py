from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.auth import models as _auth  # noqa: F401  (teams: the table team_id refers to)
from app.db.base import Base, JSONType, UTCDateTime, utcnow


class Dataset(Base):
    """An uploaded, validated training-data file. The file itself is an object in the store."""

    __tablename__ = "datasets"
    __table_args__ = (Index("ix_datasets_team_id_created_at", "team_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # The owning team: only its keys see the dataset.
    team_id: Mapped[str] = mapped_column(String(40), ForeignKey("teams.id"))
    name: Mapped[str] = mapped_column(String(200))
    format: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    columns: Mapped[list[str]] = mapped_column(JSONType)
    text_columns: Mapped[list[str]] = mapped_column(JSONType)
    rows: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    # The object's key in the store (app.storage.keys), never shown to clients.
    storage_key: Mapped[str] = mapped_column(String(300))
    # The stored file's format when the upload was converted (e.g. NLI pairs to triplets).
    stored_format: Mapped[str | None] = mapped_column(String(16))
    # role -> source column, as given on upload ({"anchor": "query", ...}).
    column_mapping: Mapped[dict[str, str] | None] = mapped_column(JSONType)
    # How the upload was converted, with counts; None when stored as uploaded.
    conversion: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # The upload-time preflight report (app.datasets.preflight); None for datasets uploaded
    # before it existed.
    preflight: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
