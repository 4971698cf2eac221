"""How many optimisation steps a run takes, in one place.

The API (job preflight) and the pipeline both import it, so they count steps with exactly the
same rule.
"""

from __future__ import annotations

import math


def total_steps(train_rows: int, batch_size: int, epochs: int, max_steps: int | None) -> int:
    """max_steps when given, else batches per epoch times epochs."""
    if max_steps is not None and max_steps > 0:
        return max_steps
    return math.ceil(train_rows / batch_size) * epochs
