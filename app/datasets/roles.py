"""Column roles, the ``column_mapping`` upload field, and which shape a file's columns make.

A role is what a column is for: anchor, positive, negative / negative_1..negative_N
(triplets and pairs), sentence1, sentence2, score (STS), premise, hypothesis, label (NLI).
``column_mapping`` maps roles to the file's own column names (``{"anchor": "query"}``);
unmapped columns keep their own names, so a column called ``anchor`` needs no mapping. The
shape is decided on the roles after mapping, and ``Layout`` lists the (role, source column)
pairs it uses in loss order: the worker loads exactly those source columns, by name and position.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from app.datasets.errors import DatasetFormatError, json_type_name, location, prefixed, where

# triplet/pair/sts are dataset kinds; nli is a source shape, converted to triplets on upload.
Shape = Literal["triplet", "pair", "sts", "nli"]

ANCHOR_ROLES: tuple[str, ...] = ("anchor", "positive")
STS_ROLES: tuple[str, ...] = ("sentence1", "sentence2", "score")
NLI_ROLES: tuple[str, ...] = ("premise", "hypothesis", "label")
FIXED_ROLES: frozenset[str] = frozenset((*ANCHOR_ROLES, "negative", *STS_ROLES, *NLI_ROLES))
TEXT_ROLES: frozenset[str] = frozenset(
    ("anchor", "positive", "sentence1", "sentence2", "premise", "hypothesis")
)
_NUMBERED_NEGATIVE = re.compile(r"negative_([1-9][0-9]*)")
MAPPING_FIELD = "column_mapping"

# What each shape needs, for the missing-column message: the intended shape first, then the rest.
_NEEDS: dict[str, tuple[str, str]] = {
    "triplet": (
        "a triplet dataset needs columns anchor, positive, negative",
        "a pair dataset anchor, positive",
    ),
    "sts": ("STS data needs columns sentence1, sentence2, score", ""),
    "nli": ("NLI data needs columns premise, hypothesis, label", ""),
}
_OTHERS: dict[str, str] = {
    "triplet": "a triplet dataset anchor, positive, negative; a pair dataset anchor, positive",
    "sts": "STS data sentence1, sentence2, score",
    "nli": "NLI data premise, hypothesis, label",
}


def is_role(name: str) -> bool:
    return name in FIXED_ROLES or _NUMBERED_NEGATIVE.fullmatch(name) is not None


def negative_index(role: str) -> int | None:
    """1 for ``negative`` and ``negative_1``, N for ``negative_N``; None for other roles."""
    if role == "negative":
        return 1
    match = _NUMBERED_NEGATIVE.fullmatch(role)
    return int(match.group(1)) if match else None


def is_text_role(role: str) -> bool:
    return role in TEXT_ROLES or negative_index(role) is not None


def count_negatives(kind: str, text_columns: Sequence[str]) -> int:
    """Negative columns of a stored dataset: every text column after anchor, positive."""
    return max(len(text_columns) - 2, 0) if kind == "triplet" else 0


@dataclass(frozen=True)
class Layout:
    """The shape of a file and the (role, source column) pairs it uses, in loss order."""

    shape: Shape
    roles: tuple[tuple[str, str], ...]

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(source for _role, source in self.roles)

    @property
    def negatives(self) -> int:
        return sum(1 for role, _ in self.roles if negative_index(role) is not None)


# --------------------------------------------------------------------------------------------
# The column_mapping field


def _mapping_error(message: str, details: dict[str, object]) -> DatasetFormatError:
    return DatasetFormatError(message, details, field=MAPPING_FIELD)


def parse_column_mapping(raw: str | None) -> dict[str, str] | None:
    """The form field's JSON text as a checked role -> column dict; None when absent or empty."""
    if raw is None or not raw.strip():
        return None

    def no_repeats(pairs: list[tuple[str, object]]) -> dict[str, object]:
        seen: dict[str, object] = {}
        for key, value in pairs:
            if key in seen:
                raise _mapping_error(f"role '{key}' is given more than once", {"role": key})
            seen[key] = value
        return seen

    try:
        value = json.loads(raw, object_pairs_hook=no_repeats)
    except json.JSONDecodeError as exc:
        raise _mapping_error(
            f"not valid JSON ({exc.msg} at character {exc.pos + 1}); send an object such as "
            '{"anchor": "query", "positive": "passage"}',
            {},
        ) from None
    except (ValueError, RecursionError):
        raise _mapping_error("not valid JSON", {}) from None
    return check_column_mapping(value)


def check_column_mapping(value: object) -> dict[str, str] | None:
    """Check a decoded mapping: known roles, non-empty string columns, no column used twice."""
    if not isinstance(value, dict):
        raise _mapping_error(
            "expected a JSON object mapping roles to your column names "
            f"(got {json_type_name(value)})",
            {},
        )
    by_column: dict[str, str] = {}
    for role, column in value.items():
        if not is_role(role):
            raise _mapping_error(
                f"unknown role '{role}': roles are anchor, positive, negative, negative_1.."
                "negative_N, sentence1, sentence2, score, premise, hypothesis, label",
                {"role": role},
            )
        if not isinstance(column, str) or not column:
            raise _mapping_error(
                f"role '{role}' must be mapped to a column name (a non-empty string)",
                {"role": role},
            )
        if column in by_column:
            raise _mapping_error(
                f"roles '{by_column[column]}' and '{role}' are both mapped to column "
                f"'{column}'; a column can play one role only",
                {"role": role, "column": column},
            )
        by_column[column] = role
    return dict(value) or None


# --------------------------------------------------------------------------------------------
# Deciding the shape


def resolve_layout(
    columns: Sequence[str], mapping: Mapping[str, str] | None, line: int | None = None
) -> Layout:
    """Decide the file's shape from its ``columns`` under ``mapping``.

    Raises DatasetFormatError: with field ``column_mapping`` for a mapping that names a column
    the file lacks or a role the shape does not use; with field ``file`` (and ``line``, the
    line the columns came from, where known) for missing columns or badly numbered negatives.
    """
    mapping = (check_column_mapping(dict(mapping)) if mapping else None) or {}
    present = set(columns)
    for role, source in mapping.items():
        if source not in present:
            raise _mapping_error(
                f"role '{role}' is mapped to column '{source}', which the file does not have "
                f"(its columns: {', '.join(columns)})",
                {"role": role, "column": source, "columns": list(columns)},
            )
    roles = dict(mapping)
    mapped_sources = set(mapping.values())
    for column in columns:
        if is_role(column) and column not in roles and column not in mapped_sources:
            roles[column] = column

    layout = _pick_layout(roles, set(mapping), columns, line)
    used = {role for role, _ in layout.roles}
    for role in mapping:
        if role not in used:
            uses = ", ".join(r for r, _ in layout.roles)
            raise _mapping_error(
                f"role '{role}' is not used: the columns make {_shape_name(layout.shape)} "
                f"data, with roles {uses}; remove '{role}' from the mapping",
                {"role": role, "column": mapping[role]},
            )
    return layout


def _shape_name(shape: Shape) -> str:
    return {"sts": "STS", "nli": "NLI"}.get(shape, shape)


def _pick_layout(
    roles: dict[str, str], mapped: set[str], columns: Sequence[str], line: int | None
) -> Layout:
    if all(role in roles for role in ANCHOR_ROLES):
        negatives = _negative_roles(roles, mapped, line)
        shape: Shape = "triplet" if negatives else "pair"
        ordered = (*ANCHOR_ROLES, *negatives)
    elif all(role in roles for role in STS_ROLES):
        shape, ordered = "sts", STS_ROLES
    elif all(role in roles for role in NLI_ROLES):
        shape, ordered = "nli", NLI_ROLES
    else:
        raise _missing_columns(roles, columns, line)
    return Layout(shape=shape, roles=tuple((role, roles[role]) for role in ordered))


def _negative_roles(roles: dict[str, str], mapped: set[str], line: int | None) -> list[str]:
    """The negative roles present, in numeric order; `negative` counts as negative_1.

    A numbering problem is blamed on column_mapping when it maps any negative, else on the file.
    """
    by_index: dict[int, str] = {}
    for role in roles:
        index = negative_index(role)
        if index is not None:
            by_index.setdefault(index, role)
    blame_mapping = any(negative_index(role) is not None for role in mapped)
    field = MAPPING_FIELD if blame_mapping else "file"
    place = "" if blame_mapping else where(line)
    base = {} if blame_mapping else location(line)
    if "negative" in roles and "negative_1" in roles:
        message = "columns 'negative' and 'negative_1' are both the first negative; keep one"
        details = {**base, "column": roles["negative_1"]}
        raise DatasetFormatError(prefixed(place, message), details, field=field)
    for expected in range(1, len(by_index) + 1):
        if expected not in by_index:
            column = f"negative_{expected}"
            shown = "'negative_1' (or 'negative')" if expected == 1 else f"'{column}'"
            found = ", ".join(by_index[i] for i in sorted(by_index))
            message = (
                f"column {shown} is missing: negative columns are numbered negative_1 "
                f"(or negative), negative_2, ... without gaps (found {found})"
            )
            details = {**base, "column": column, "missing": [column]}
            raise DatasetFormatError(prefixed(place, message), details, field=field)
    return [by_index[i] for i in sorted(by_index)]


def _missing_columns(
    roles: dict[str, str], columns: Sequence[str], line: int | None
) -> DatasetFormatError:
    # Guess the intended shape from the text columns present (ties go to triplet/pair): the
    # message then names what that shape lacks, and lists the other shapes.
    present = {
        "triplet": sum(1 for r in roles if r in ANCHOR_ROLES or negative_index(r) is not None),
        "sts": sum(1 for r in roles if r in STS_ROLES[:2]),
        "nli": sum(1 for r in roles if r in NLI_ROLES[:2]),
    }
    intended = max(present, key=lambda shape: present[shape])  # the first maximum wins
    wanted = {"triplet": ANCHOR_ROLES, "sts": STS_ROLES, "nli": NLI_ROLES}[intended]
    missing = [role for role in wanted if role not in roles]
    names = ", ".join(f"'{role}'" for role in missing)
    needs, also = _NEEDS[intended]
    others = [also] if also else []
    others += [text for shape, text in _OTHERS.items() if shape != intended]
    message = (
        f"missing column(s) {names}: {needs} ({'; '.join(others)}); columns with other "
        f"names can be given these roles with the {MAPPING_FIELD} field"
    )
    details = location(line)
    details["missing"] = missing
    details["columns"] = list(columns)
    return DatasetFormatError(prefixed(where(line), message), details)


# --------------------------------------------------------------------------------------------
# Column mappings of Hub datasets, given in a job


def hub_layout(mapping: Mapping[str, str]) -> Layout:
    """The layout a Hub dataset's column mapping describes on its own.

    The API never sees a Hub dataset's columns, so the mapping must name every role the data
    plays (anchor, positive and any negatives; or sentence1, sentence2, score). NLI columns are
    converted on upload only. Raises DatasetFormatError (field ``column_mapping``).
    """
    layout = resolve_layout(list(mapping.values()), mapping)
    if layout.shape == "nli":
        raise _mapping_error(
            "NLI columns (premise, hypothesis, label) are converted to triplets on upload only; "
            "upload the data, or map anchor, positive and negative columns",
            {},
        )
    return layout


def hub_sources(mapping: Mapping[str, str] | None) -> tuple[str, ...] | None:
    """A Hub mapping's source columns in loss order, or None without a mapping."""
    return hub_layout(mapping).sources if mapping else None
