from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DatasetConversion(BaseModel):
    """How an upload was converted before it was stored (NLI pairs -> triplets)."""

    model_config = ConfigDict(populate_by_name=True)

    from_: Literal["nli"] = Field(
        alias="from", description="What the upload was: nli = premise, hypothesis, label pairs."
    )
    source_rows: int = Field(description="Rows in the uploaded file.")
    premises: int = Field(description="Distinct premises in the uploaded file.")
    triplets: int = Field(
        description="Triplets made: for each premise, every entailed x contradicting hypothesis."
    )
    premises_without_pair: int = Field(
        description="Premises lacking an entailed or a contradicting hypothesis (no triplets)."
    )


class DatasetRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "ds_5f0c2a9e1b7d4c3a8e6f0b1d",
                    "name": "nli-train",
                    "format": "jsonl",
                    "kind": "triplet",
                    "columns": ["premise", "hypothesis", "label"],
                    "text_columns": ["anchor", "positive", "negative"],
                    "negatives": 1,
                    "column_mapping": None,
                    "conversion": {
                        "from": "nli",
                        "source_rows": 9842,
                        "premises": 3319,
                        "triplets": 3253,
                        "premises_without_pair": 376,
                    },
                    "rows": 3253,
                    "size_bytes": 1645353,
                    "sha256": "9f2c...",
                    "created_at": "2026-11-27T15:00:00Z",
                }
            ]
        }
    )

    id: str = Field(description="Pass as train_dataset / eval_dataset / test_dataset.")
    name: str = Field(description="The upload's `name` field, or its file name.")
    format: Literal["jsonl", "csv", "parquet"] = Field(description="The uploaded file's format.")
    kind: Literal["triplet", "pair", "sts"] = Field(
        description="triplet: anchor, positive, one or more negatives (NLI uploads become "
        "triplets). pair: anchor, positive. sts: sentence1, sentence2, score in [0, 1]."
    )
    columns: list[str] = Field(description="Every column in the uploaded file, in file order.")
    text_columns: list[str] = Field(
        description="The columns trained on, in loss order, as named in the stored file: "
        "anchor, positive, then every negative; or sentence1, sentence2, score. Under a "
        "column_mapping these are your own column names; other columns are never trained on."
    )
    negatives: int = Field(description="Number of negative columns (0 for pairs and STS).")
    column_mapping: dict[str, str] | None = Field(
        description="The column_mapping given on upload (role -> your column), or null."
    )
    conversion: DatasetConversion | None = Field(
        description="How the upload was converted before storing (NLI pairs to triplets, "
        "with counts), or null when it is stored as uploaded."
    )
    rows: int = Field(description="Rows trained on (triplets made, for converted NLI pairs).")
    size_bytes: int = Field(description="Size of the uploaded file.")
    sha256: str = Field(description="SHA-256 of the uploaded bytes.")
    created_at: datetime


class DatasetList(BaseModel):
    data: list[DatasetRead]
