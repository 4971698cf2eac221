"""The rules for names a client gives for things on the Hugging Face Hub (or a model folder).

A client's string is a *name*, looked up by the Hub client (or inside the configured model
directories), never a filesystem path: libraries such as `datasets` and sentence-transformers
read anything that exists on the worker's disk as a local folder, so names that could be paths
(absolute, `~`, `..`, `file://`, more than one `/`, a trailing newline...) are refused before
any library sees them. One module, imported by the API's schemas (a 422 naming the field) and by
the worker (which checks again: a job row may predate these rules). Standard library only.

Every check takes the client's value and returns it unchanged, or raises ValueError saying which
rule it breaks (pydantic turns that into a 422; the worker into its typed errors). Patterns are
matched with `re.fullmatch`: `re.match(...$)` would let "name\\n" through.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

# `name` or `owner/name` by huggingface_hub's validate_repo_id (the Hub client refuses anything
# else): each part 1 to 96 ASCII letters, digits, '-', '_' or '.', starting and ending with a
# letter, digit or '_'; no '--' or '..' anywhere (_REPO_ID_FORBIDDEN) and no '.git' at the end.
_REPO_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_REPO_ID = re.compile(rf"(?:{_REPO_PART}/)?{_REPO_PART}")
_REPO_ID_FORBIDDEN = ("--", "..")
# Branches and tags may nest (`refs/pr/1`); a commit is 40 hex digits, which this also allows.
_REVISION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_.-]+)*")
# `datasets` config and split names.
_PART_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")

REPO_ID_MAX_LENGTH = 96 * 2 + 1
REVISION_MAX_LENGTH = 100
CONFIG_MAX_LENGTH = 100
SPLIT_MAX_LENGTH = 100
COLUMNS_MAX = 64
COLUMN_NAME_MAX_LENGTH = 200

HUB_ID_RULE = (
    "must be a Hugging Face Hub id like 'org/name' or 'name' (letters, digits, '-', '_', '.'); "
    "paths, URLs, '~', '..' and more than one '/' are not accepted"
)
MODEL_NAME_RULE = (
    "must be a Hugging Face Hub id like 'org/name' or the name of a model folder ('name' or "
    "'org/name') in the server's model directories; paths, URLs, '~', '..' and more than one "
    "'/' are not accepted"
)


def check_hub_id(value: str, rule: str = HUB_ID_RULE) -> str:
    """`value` when it is a Hub repo id (`name` or `owner/name`, by the Hub's own rules);
    ValueError with `rule` otherwise."""
    if (
        len(value) > REPO_ID_MAX_LENGTH
        or not _REPO_ID.fullmatch(value)
        or any(bad in value for bad in _REPO_ID_FORBIDDEN)
        or value.endswith(".git")
    ):
        raise ValueError(rule)
    return value


def check_model_name(value: str) -> str:
    """`value` when it is a base model name: a Hub id, which is also the shape of a model folder
    name inside a model directory; ValueError otherwise."""
    return check_hub_id(value, MODEL_NAME_RULE)


def check_revision(value: str) -> str:
    """`value` when it is a git branch, tag or commit sha: letters, digits, '-', '_', '.' and
    '/' between parts, not starting with '-', '.' or '/', without '..'; ValueError otherwise."""
    if (
        len(value) > REVISION_MAX_LENGTH
        or not _REVISION.fullmatch(value)
        or ".." in value
        or any(part in ("", ".") for part in value.split("/"))
    ):
        raise ValueError(
            "must be a branch, tag or commit sha (letters, digits, '-', '_', '.', '/'; not "
            "starting with '-', '.' or '/'; no '..')"
        )
    return value


def _check_part_name(value: str, what: str, max_length: int) -> str:
    if len(value) > max_length or not _PART_NAME.fullmatch(value) or ".." in value:
        raise ValueError(
            f"must be a {what} name of at most {max_length} letters, digits, '-', '_' or '.', "
            "not starting with '-' or '.' and without '..'"
        )
    return value


def check_config(value: str) -> str:
    """`value` when it is a dataset configuration name; ValueError otherwise."""
    return _check_part_name(value, "configuration", CONFIG_MAX_LENGTH)


def check_split(value: str) -> str:
    """`value` when it is a split name (no slicing: `limit` does that); ValueError otherwise."""
    return _check_part_name(value, "split", SPLIT_MAX_LENGTH)


def _has_control_character(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text)


def check_columns(mapping: Mapping[str, str]) -> Mapping[str, str]:
    """`mapping` (role -> column of a Hub dataset) when it has at most COLUMNS_MAX entries whose
    roles and columns are 1 to COLUMN_NAME_MAX_LENGTH characters without control characters;
    ValueError otherwise. Which roles make sense is app.datasets.roles' business."""
    if len(mapping) > COLUMNS_MAX:
        raise ValueError(f"must map at most {COLUMNS_MAX} roles to columns")
    for role, column in mapping.items():
        for text in (role, column):
            if not 1 <= len(text) <= COLUMN_NAME_MAX_LENGTH or _has_control_character(text):
                raise ValueError(
                    f"roles and column names must be 1 to {COLUMN_NAME_MAX_LENGTH} characters "
                    "without control characters"
                )
    return mapping


__all__ = [
    "COLUMNS_MAX",
    "COLUMN_NAME_MAX_LENGTH",
    "CONFIG_MAX_LENGTH",
    "HUB_ID_RULE",
    "MODEL_NAME_RULE",
    "REPO_ID_MAX_LENGTH",
    "REVISION_MAX_LENGTH",
    "SPLIT_MAX_LENGTH",
    "check_columns",
    "check_config",
    "check_hub_id",
    "check_model_name",
    "check_revision",
    "check_split",
]
