"""Which format an uploaded file is in: by its name, or failing that by its first bytes."""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath
from typing import Literal

from app.datasets.errors import DatasetFormatError

DatasetFormat = Literal["jsonl", "csv", "parquet"]
FORMATS: tuple[DatasetFormat, ...] = ("jsonl", "csv", "parquet")

_EXTENSIONS: dict[str, DatasetFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
PARQUET_MAGIC = b"PAR1"
UTF8_BOM = b"\xef\xbb\xbf"


def detect_format(filename: str | None, head: bytes) -> DatasetFormat:
    """Pick the file's format from its name, or failing that from its first bytes.

    A known extension wins (``.jsonl``/``.ndjson``/``.json`` -> jsonl, ``.csv`` -> csv,
    ``.parquet``/``.pq`` -> parquet). Otherwise ``head`` is sniffed: the Parquet magic
    ``PAR1`` means parquet, text whose first non-space character is ``{`` means jsonl, and any
    other text means csv. Raises :class:`DatasetFormatError` for content that can be none of
    them (empty, or binary that is not Parquet).
    """
    if filename:
        # Browsers may send a full Windows path; take the last component either way.
        name = PureWindowsPath(PurePosixPath(filename).name).name
        by_extension = _EXTENSIONS.get(PurePosixPath(name).suffix.lower())
        if by_extension is not None:
            return by_extension

    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    text = head[len(UTF8_BOM) :] if head.startswith(UTF8_BOM) else head
    stripped = text.lstrip()
    if not stripped:
        raise DatasetFormatError(
            "the file is empty: upload a JSON Lines, CSV or Parquet file with your training rows"
        )
    if b"\x00" in text or not _is_utf8_prefix(text):
        raise DatasetFormatError(
            "the file is neither UTF-8 text nor Parquet: upload a JSON Lines, CSV or Parquet file"
        )
    if stripped.startswith(b"{"):
        return "jsonl"
    return "csv"


def _is_utf8_prefix(data: bytes) -> bool:
    """True if ``data`` is valid UTF-8, allowing a multi-byte character cut off at the end."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A sequence truncated by the end of the sniffed head is fine; anything else is not.
        return exc.reason == "unexpected end of data" and exc.end == len(data)
    return True
