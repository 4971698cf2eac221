"""What each role's values must be: texts, STS scores, NLI labels; per row and per Parquet type.

``row_checker(layout, format)`` returns a function that checks one row's values for the roles
of ``layout`` and returns them in role order (scores as float, labels as 0/1/2), raising
DatasetFormatError naming the line, row and (source) column at the first problem.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa

from app.datasets.errors import DatasetFormatError, json_type_name, value_error
from app.datasets.formats import DatasetFormat
from app.datasets.nli import parse_label
from app.datasets.readers import RowReader
from app.datasets.roles import Layout, is_text_role

ValueCheck = Callable[[Any, str, int | None, int | None], Any]
RowCheck = Callable[[int | None, int, Mapping[str, Any]], tuple[Any, ...]]

# A decimal number as pandas reads it from CSV (no NaN/inf, no underscores), spaces allowed.
_CSV_NUMBER = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")


def check_text(value: Any, column: str, line: int | None, row: int | None) -> str:
    """The value, if it is a string with at least one non-whitespace character."""
    if isinstance(value, str):
        if value.strip():
            return value
        problem = "is empty or whitespace-only"
    else:
        problem = f"is not a string (got {json_type_name(value)})"
    raise value_error(line, row, column, problem)


def check_score(value: Any, column: str, line: int | None, row: int | None) -> float:
    """A JSON or Parquet number (not a boolean) from 0 to 1."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise value_error(line, row, column, f"is not a number (got {json_type_name(value)})")
    return _in_unit_range(float(value), column, line, row)


def check_csv_score(value: str, column: str, line: int | None, row: int | None) -> float:
    """A CSV field holding a decimal number from 0 to 1."""
    if not _CSV_NUMBER.fullmatch(value):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise value_error(line, row, column, f"is not a number (got {shown!r})")
    return _in_unit_range(float(value), column, line, row)


def _in_unit_range(score: float, column: str, line: int | None, row: int | None) -> float:
    if math.isfinite(score) and 0.0 <= score <= 1.0:
        return score
    hint = "; divide 0-5 similarity scores by 5" if 1.0 < score <= 5.0 else ""
    raise value_error(line, row, column, f"must be a score from 0 to 1 (got {score!r}{hint})")


def row_checker(layout: Layout, format: DatasetFormat) -> RowCheck:
    plan: list[tuple[str, ValueCheck]] = []
    for role, source in layout.roles:
        if role == "score":
            plan.append((source, check_csv_score if format == "csv" else check_score))
        elif role == "label":
            plan.append((source, parse_label))
        else:
            plan.append((source, check_text))

    def check(line: int | None, row: int, values: Mapping[str, Any]) -> tuple[Any, ...]:
        try:
            return tuple([check_value(values[src], src, line, row) for src, check_value in plan])
        except KeyError:  # a later JSONL object without one of the columns
            missing = next(source for source, _ in plan if source not in values)
            raise value_error(line, row, missing, "is missing") from None

    return check


def check_column_types(layout: Layout, reader: RowReader) -> None:
    """Check the Arrow types of the columns used (Parquet; other formats have no types)."""
    for role, source in layout.roles:
        arrow_type = reader.arrow_type(source)
        if arrow_type is None:
            continue
        if is_text_role(role):
            if not is_arrow_string(arrow_type):
                raise _type_error(source, arrow_type, "text columns must be strings")
        elif role == "score":
            if not (pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)):
                raise _type_error(source, arrow_type, "the score column must be numeric")
        elif role == "label" and not (
            pa.types.is_integer(arrow_type) or is_arrow_string(arrow_type)
        ):
            raise _type_error(source, arrow_type, "the label column must hold integers or strings")


def _type_error(column: str, arrow_type: Any, rule: str) -> DatasetFormatError:
    return DatasetFormatError(
        f"column '{column}' has type {arrow_type}: {rule}", {"column": column}
    )


def is_arrow_string(arrow_type: Any) -> bool:
    """True for Arrow string types, plain or dictionary-encoded (e.g. pandas categoricals)."""
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    checks = [pa.types.is_string, pa.types.is_large_string]
    if hasattr(pa.types, "is_string_view"):  # pyarrow >= 16
        checks.append(pa.types.is_string_view)
    return any(check(arrow_type) for check in checks)
