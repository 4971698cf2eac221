"""Writing small upload files (JSONL, CSV, Parquet) from real rows of the shared data."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.datasets.parsing import DatasetFormatError, describe_dataset
from tests.support.tiny_model import SHARED_DATA, read_jsonl

SNLI_TRIPLETS = SHARED_DATA / "snli_dev_triplets.jsonl"
SNLI_PAIRS = SHARED_DATA / "snli_dev_pairs.jsonl"
STSB_DEV = SHARED_DATA / "stsb_dev.jsonl"

__all__ = ["SNLI_PAIRS", "SNLI_TRIPLETS", "STSB_DEV", "read_jsonl"]


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """The rows as CSV, header from the first row's keys; values written with str()."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(list(rows[0]))
    writer.writerows([[row[c] for c in rows[0]] for row in rows])
    path.write_bytes(buffer.getvalue().encode("utf-8"))
    return path


def write_parquet(path: Path, rows: Sequence[dict[str, Any]] | pa.Table) -> Path:
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows))
    pq.write_table(table, path)
    return path


def write_format(folder: Path, fmt: str, rows: Sequence[dict[str, Any]]) -> Path:
    writers = {"jsonl": write_jsonl, "csv": write_csv, "parquet": write_parquet}
    return writers[fmt](folder / f"data.{fmt}", rows)


def format_error(path: Path, fmt: Any, mapping: dict[str, str] | None = None, **kw: Any):
    with pytest.raises(DatasetFormatError) as info:
        describe_dataset(path, fmt, mapping, **kw)
    return info.value
