"""The hold-out rule, in one place: how many training rows are held out as the eval set.

Imports nothing (no numpy, torch or datasets), so the API (job preflight) and the worker
(``worker.training.data.split_holdout``) apply exactly the same rule.
"""

from __future__ import annotations

# HOLDOUT_SHARE of the training rows (rounded), at least 1 and at most HOLDOUT_MAX_ROWS, and
# none when the training data has fewer than HOLDOUT_MIN_TRAIN_ROWS rows.
HOLDOUT_SHARE = 0.05
HOLDOUT_MAX_ROWS = 1000
HOLDOUT_MIN_TRAIN_ROWS = 20


def holdout_rows(total: int) -> int:
    """Rows held out of ``total`` training rows when the job has no eval set (0: none)."""
    if total < HOLDOUT_MIN_TRAIN_ROWS:
        return 0
    return min(HOLDOUT_MAX_ROWS, max(1, round(total * HOLDOUT_SHARE)))


__all__ = ["HOLDOUT_MAX_ROWS", "HOLDOUT_MIN_TRAIN_ROWS", "HOLDOUT_SHARE", "holdout_rows"]
