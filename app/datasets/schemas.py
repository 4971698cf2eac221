from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

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


PreflightCode = Literal[
    "duplicate_rows",
    "anchor_equals_positive",
    "anchor_equals_negative",
    "sentence1_equals_sentence2",
    "duplicate_positives",
]


class PreflightExample(BaseModel):
    """One row showing a finding."""

    row: int = Field(
        description="1-based data row of the stored file (for NLI uploads: the triplet number)."
    )
    texts: dict[str, str] = Field(
        description="The row's texts keyed by the stored file's text columns (the dataset's "
        "text_columns, without the STS score), each cut to 200 characters."
    )
    same_as_row: int | None = Field(
        default=None,
        description="duplicate_rows, duplicate_positives: the first row with the same texts / "
        "positive; null for the other findings.",
    )


class PreflightFinding(BaseModel):
    """A data problem that does not stop training but makes it worse; fix it or accept it."""

    code: PreflightCode = Field(
        description="duplicate_rows: the text columns repeat an earlier row exactly (repeats "
        "counted, not the first occurrence). anchor_equals_positive / anchor_equals_negative "
        "(triplet, pair): the anchor equals its positive / any of its negatives, ignoring case "
        "and surrounding spaces. sentence1_equals_sentence2 (sts): the same for the two "
        "sentences. duplicate_positives (triplet, pair): rows sharing their positive (ignoring "
        "case and surrounding spaces) with another row, every such row counted: false "
        "negatives for MNR when two land in one batch."
    )
    severity: Literal["warning"] = Field(
        description="Always warning: problems that make a file unusable are rejected at upload "
        "with 422 dataset_invalid instead."
    )
    count: int = Field(description="Rows affected (always > 0: empty findings are left out).")
    message: str = Field(description="Why it matters and what to do.")
    examples: list[PreflightExample] = Field(description="Up to 3 affected rows, first first.")


class DatasetPreflight(BaseModel):
    """Checks run on the stored file at upload; findings with a count of 0 are left out."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "rows": 3253,
                    "checked": [
                        "duplicate_rows",
                        "anchor_equals_positive",
                        "anchor_equals_negative",
                        "duplicate_positives",
                    ],
                    "findings": [
                        {
                            "code": "duplicate_rows",
                            "severity": "warning",
                            "count": 12,
                            "message": "12 row(s) repeat the texts of an earlier row exactly. ...",
                            "examples": [
                                {
                                    "row": 17,
                                    "texts": {
                                        "anchor": "A man plays a guitar.",
                                        "positive": "A man plays music.",
                                        "negative": "A man is asleep.",
                                    },
                                    "same_as_row": 3,
                                }
                            ],
                        }
                    ],
                }
            ]
        }
    )

    rows: int = Field(description="Rows read from the stored file (equals the dataset's rows).")
    checked: list[PreflightCode] = Field(
        description="The finding codes looked for, for this dataset's kind."
    )
    findings: list[PreflightFinding] = Field(
        description="What was found, in the order of checked; empty for a clean file."
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
                    "preflight": {
                        "rows": 3253,
                        "checked": [
                            "duplicate_rows",
                            "anchor_equals_positive",
                            "anchor_equals_negative",
                            "duplicate_positives",
                        ],
                        "findings": [
                            {
                                "code": "duplicate_positives",
                                "severity": "warning",
                                "count": 41,
                                "message": "41 row(s) share their positive ...",
                                "examples": [
                                    {
                                        "row": 5,
                                        "texts": {
                                            "anchor": "A man plays a guitar.",
                                            "positive": "A man plays music.",
                                            "negative": "A man is asleep.",
                                        },
                                        "same_as_row": 4,
                                    }
                                ],
                            }
                        ],
                    },
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
    preflight: DatasetPreflight | None = Field(
        default=None,
        description="Silent data problems found in the stored file at upload (duplicates, "
        "anchors equal to their positive or negative, shared positives), as warnings with "
        "counts, messages and example rows. Null for datasets uploaded before the report "
        "existed.",
    )
    size_bytes: int = Field(description="Size of the uploaded file.")
    sha256: str = Field(description="SHA-256 of the uploaded bytes.")
    created_at: datetime


class DatasetList(BaseModel):
    data: list[DatasetRead] = Field(description="A page of the team's datasets, newest first.")
    has_more: bool = Field(description="Whether older datasets follow this page.")
    next_cursor: str | None = Field(
        description="Pass as ?cursor= to get the next page; null on the last page."
    )


class DatasetUploadForm(BaseModel):
    """The form fields of POST /datasets besides `file` (read from the streamed body, so
    validated here rather than by FastAPI). :func:`upload_form_schema` documents all three."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(
        None,
        max_length=200,
        description="A name for the dataset. Default: the file name.",
        examples=["support-tickets"],
    )
    column_mapping: str | None = Field(
        None,
        description='JSON object role -> your column name, e.g. {"anchor": "query", '
        '"positive": "passage", "negative": "hard_negative"}. Roles: anchor, positive, '
        "negative, negative_1..negative_N, sentence1, sentence2, score, premise, "
        "hypothesis, label. Unmapped columns keep their own names.",
    )


def upload_form_schema() -> dict[str, Any]:
    """The OpenAPI schema of the POST /datasets multipart body: `file` and the form fields."""
    schema = DatasetUploadForm.model_json_schema()
    schema["properties"] = {
        "file": {
            "type": "string",
            "format": "binary",
            "contentMediaType": "application/octet-stream",
            "title": "File",
            "description": "JSONL, CSV or Parquet with text columns. At most "
            "EMBEDTUNE_MAX_UPLOAD_BYTES (or your team's limit): 413 above it.",
        },
        **schema["properties"],
    }
    schema["required"] = ["file"]
    schema["description"] = "The multipart/form-data body of POST /datasets."
    return schema
