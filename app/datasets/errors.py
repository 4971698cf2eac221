"""The one error type of upload validation, and the helpers that word where a problem is.

Numbering used in messages and details:

* ``line`` is the 1-based physical line of the file (JSONL, CSV; Parquet has no lines).
* ``row`` is the 1-based data row (blank lines and the CSV header are not rows).
* ``column`` is the name of the file's column concerned (the source column, under a mapping).
"""

from __future__ import annotations


class DatasetFormatError(Exception):
    """A problem with an uploaded dataset, worded for the user who uploaded it.

    ``message`` is the user-facing text; ``details`` says where the problem is, with the keys
    ``line``, ``row`` and ``column`` present only where known (plus e.g. ``missing`` and
    ``columns`` for a missing-column error, ``role`` for a column-mapping error). ``field`` is
    the upload form field at fault: ``file``, or ``column_mapping``.
    """

    code = "dataset_invalid"  # the error code of the 422 it becomes
    # The Limits field a limit error is about (named in the 422 with where it comes from).
    limit_field: str | None = None
    message: str
    details: dict[str, object]
    field: str

    def __init__(
        self,
        message: str,
        details: dict[str, object] | None = None,
        *,
        field: str = "file",
        limit_field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = dict(details) if details else {}
        self.field = field
        if limit_field is not None:
            self.limit_field = limit_field

    def __str__(self) -> str:
        return self.message


class DatasetTooLarge(DatasetFormatError):
    """More rows than the team's ``max_dataset_rows`` (or, with ``limit_field`` set, more
    uncompressed bytes than ``max_dataset_uncompressed_bytes``); found before the rest is read."""

    code = "dataset_too_large"
    limit_field: str | None = "max_dataset_rows"


class TextTooLong(DatasetFormatError):
    """A text cell longer than the team's ``max_text_chars``, or a line too long to hold a row
    of such cells; found before the text is held in full."""

    code = "text_too_long"
    limit_field: str | None = "max_text_chars"


MAX_PROBLEMS = 20


class Problems:
    """The row problems of one file: the first MAX_PROBLEMS kept, all of them counted, so a
    rejected upload lists what to fix instead of one problem per attempt."""

    def __init__(self) -> None:
        self.kept: list[DatasetFormatError] = []
        self.count = 0

    def __bool__(self) -> bool:
        return self.count > 0

    def add(self, problem: DatasetFormatError) -> None:
        self.count += 1
        if len(self.kept) < MAX_PROBLEMS:
            self.kept.append(problem)

    def raise_any(self) -> None:
        """Raise the first problem; when there are more, it carries them all in
        ``details.problems`` (up to MAX_PROBLEMS, each with its ``code``, ``message`` and
        location) and their number in ``details.problem_count``. Nothing when there is none."""
        if not self.kept:
            return
        first = self.kept[0]
        if self.count > 1:
            listed = [{"code": p.code, "message": p.message, **p.details} for p in self.kept]
            first.message += (
                f" (and {self.count - 1} more problem(s); the first {len(self.kept)} are in "
                "details.problems)"
            )
            first.details |= {"problem_count": self.count, "problems": listed}
        raise first


def text_too_long(
    line: int | None, row: int | None, column: str, chars: int, limit: int
) -> TextTooLong:
    """``line 3 (row 2): column 'x' has 100001 characters, more than ...`` naming the cell."""
    details = {**location(line, row), "column": column, "chars": chars, "max_text_chars": limit}
    problem = f"column '{column}' has {chars} characters, more than the limit of {limit}"
    return TextTooLong(prefixed(where(line, row), problem), details)


def where(line: int | None = None, row: int | None = None) -> str:
    """``line 3 (row 2)``, ``line 3``, ``row 2`` or ``""``."""
    if line is not None and row is not None:
        return f"line {line} (row {row})"
    if line is not None:
        return f"line {line}"
    if row is not None:
        return f"row {row}"
    return ""


def location(line: int | None = None, row: int | None = None) -> dict[str, object]:
    """The ``line``/``row`` details keys that are known."""
    details: dict[str, object] = {}
    if line is not None:
        details["line"] = line
    if row is not None:
        details["row"] = row
    return details


def prefixed(place: str, message: str) -> str:
    return f"{place}: {message}" if place else message


def value_error(line: int | None, row: int | None, column: str, problem: str) -> DatasetFormatError:
    """``line 3 (row 2): column 'x' <problem>`` with details line, row, column."""
    details = location(line, row)
    details["column"] = column
    return DatasetFormatError(prefixed(where(line, row), f"column '{column}' {problem}"), details)


def json_type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
