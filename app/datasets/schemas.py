from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DatasetRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "ds_5f0c2a9e1b7d4c3a8e6f0b1d",
                    "name": "nli-train",
                    "format": "jsonl",
                    "kind": "triplet",
                    "columns": ["anchor", "positive", "negative"],
                    "rows": 3253,
                    "size_bytes": 612345,
                    "sha256": "9f2c...",
                    "created_at": "2026-11-27T15:00:00Z",
                }
            ]
        }
    )

    id: str = Field(description="Pass as train_dataset / eval_dataset / test_dataset.")
    name: str = Field(description="The upload's `name` field, or its file name.")
    format: Literal["jsonl", "csv", "parquet"]
    kind: Literal["triplet", "pair"] = Field(
        description="triplet: anchor, positive, negative. pair: anchor, positive."
    )
    columns: list[str] = Field(description="Every column in the file, in file order.")
    rows: int
    size_bytes: int
    sha256: str = Field(description="SHA-256 of the uploaded bytes.")
    created_at: datetime


class DatasetList(BaseModel):
    data: list[DatasetRead]
