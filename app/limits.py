"""Per-team limits: what one team may ask of a shared deployment.

The settings (EMBEDTUNE_MAX_*) give every team's defaults; a team's own `limits` (a JSON object
keyed by the :class:`Limits` field names) overrides them. Hyperparameter bounds never go past
the absolute caps below, which are also the bounds of the job schema (``app.jobs.schemas``).

Callers get a team's limits from :func:`limits_for`; routes get them from ``LimitsDep``
(:func:`request_limits`), the one place the caller's team is turned into its limits.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends

from app.auth.deps import TeamDep
from app.deps import SettingsDep
from app.errors import AppError, PayloadTooLarge, ValidationFailed
from app.settings import BATCH_SIZE_CAP, EPOCHS_CAP, SEQ_LENGTH_CAP, STEPS_CAP, Settings

log = logging.getLogger(__name__)

# Bytes a multipart body may carry beyond the file itself (boundaries, part headers, the
# `name` and `column_mapping` fields).
FORM_OVERHEAD_BYTES = 64 * 1024

# Limits field -> the setting that gives its default (named in error messages).
SETTING_NAMES: dict[str, str] = {
    "max_active_jobs": "EMBEDTUNE_MAX_ACTIVE_JOBS",
    "max_upload_bytes": "EMBEDTUNE_MAX_UPLOAD_BYTES",
    "max_dataset_rows": "EMBEDTUNE_MAX_DATASET_ROWS",
    "max_text_chars": "EMBEDTUNE_MAX_TEXT_CHARS",
    "max_dataset_uncompressed_bytes": "EMBEDTUNE_MAX_DATASET_UNCOMPRESSED_BYTES",
    "max_epochs": "EMBEDTUNE_MAX_EPOCHS",
    "max_steps": "EMBEDTUNE_MAX_STEPS",
    "max_batch_size": "EMBEDTUNE_MAX_BATCH_SIZE",
    "max_seq_length": "EMBEDTUNE_MAX_SEQ_LENGTH",
}
_CAPS: dict[str, int] = {
    "max_epochs": EPOCHS_CAP,
    "max_steps": STEPS_CAP,
    "max_batch_size": BATCH_SIZE_CAP,
    "max_seq_length": SEQ_LENGTH_CAP,
}
# Job hyperparameter -> the Limits field bounding it.
HYPERPARAMETER_LIMITS: dict[str, str] = {
    "epochs": "max_epochs",
    "max_steps": "max_steps",
    "batch_size": "max_batch_size",
    "max_seq_length": "max_seq_length",
}
ACTIVE_JOBS_RETRY_AFTER_S = 30


@dataclass(frozen=True)
class Limits:
    """What one team may do. Every value is a positive integer, inclusive ("at most")."""

    max_active_jobs: int  # queued + running jobs at once
    max_upload_bytes: int  # bytes of one dataset file
    max_dataset_rows: int  # data rows of one dataset (source rows, and stored triplets for NLI)
    max_text_chars: int  # characters of one text cell of a dataset
    max_dataset_uncompressed_bytes: int  # a dataset's data uncompressed (Parquet: as declared)
    max_epochs: int
    max_steps: int
    max_batch_size: int
    max_seq_length: int


LIMIT_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Limits))


def limits_for(settings: Settings, overrides: Mapping[str, Any] | None = None) -> Limits:
    """The limits of a team: the settings, with the team's own `limits` JSON on top.

    ``overrides`` maps Limits field names to positive integers; a team's value replaces the
    setting (higher or lower), but hyperparameter bounds stay within the absolute caps. Unknown
    keys and values that are not positive integers are ignored (and logged), so a bad row never
    breaks a request.
    """
    values: dict[str, int] = {name: int(getattr(settings, name)) for name in LIMIT_FIELDS}
    for key, value in (overrides or {}).items():
        if key not in values:
            log.warning("ignoring unknown limit %r in a team's limits", key)
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            log.warning("ignoring team limit %s=%r: not a positive integer", key, value)
            continue
        values[key] = value
    for key, cap in _CAPS.items():
        values[key] = min(values[key], cap)
    return Limits(**values)


def request_limits(settings: SettingsDep, team: TeamDep) -> Limits:
    """The limits of the team making the request: the settings, with the team's overrides."""
    return limits_for(settings, overrides=team.limits)


LimitsDep = Annotated[Limits, Depends(request_limits)]


def limit_source(field: str) -> str:
    """Where a limit comes from, for error messages: its setting, or the team's override."""
    return f"setting {SETTING_NAMES[field]} or your team's limits"


def upload_too_large(limits: Limits) -> PayloadTooLarge:
    """413 for an upload over ``max_upload_bytes``."""
    limit = limits.max_upload_bytes
    return PayloadTooLarge(
        f"the upload is larger than the limit of {limit} bytes "
        f"({limit_source('max_upload_bytes')}); split the dataset or ask for a higher limit",
        {"limit_bytes": limit},
    )


def check_hyperparameters(
    limits: Limits, hyperparameters: Mapping[str, Any], given: Collection[str] | None = None
) -> None:
    """422 `limit_exceeded` naming the first hyperparameter above its bound (None is unset).

    ``given`` names the hyperparameters the client sent; a default over the limit (a server
    whose limit is below the schema's default) is refused too, and the message says so.
    """
    for name, field in HYPERPARAMETER_LIMITS.items():
        value = hyperparameters.get(name)
        limit = getattr(limits, field)
        if isinstance(value, int) and value > limit:
            got = f"{value}" if given is None or name in given else f"the default {value}"
            raise ValidationFailed(
                f"hyperparameters.{name}: at most {limit} ({limit_source(field)}), got {got}",
                {"field": f"hyperparameters.{name}", "max": limit, "got": value},
                code="limit_exceeded",
            )


class TooManyActiveJobs(AppError):
    status_code = 429
    code = "too_many_active_jobs"
    headers = {"Retry-After": str(ACTIVE_JOBS_RETRY_AFTER_S)}


def check_active_jobs(limits: Limits, active: int) -> None:
    """429 `too_many_active_jobs` (with Retry-After) when ``active`` jobs already fill the
    team's ``max_active_jobs``."""
    limit = limits.max_active_jobs
    if active >= limit:
        raise TooManyActiveJobs(
            f"your team already has {active} queued or running job(s), the limit is {limit} "
            f"({limit_source('max_active_jobs')}); wait for one to finish or cancel one, "
            "then retry",
            {"active_jobs": active, "max": limit},
        )
