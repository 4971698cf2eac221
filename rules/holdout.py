"""The hold-out rule, in one place: which training rows are held out as the eval set.

Rows are held out by anchor, not one by one: data such as SNLI repeats an anchor (a premise) over
several rows, and a held-out row whose anchor is also trained on would make the held-out scores
optimistic. So every row of a held-out anchor is held out, and no held-out anchor is trained on.

The API (job preflight, which streams the stored file) and the worker
(``worker.training.data.split_holdout``, on a ``datasets.Dataset``) both import this module, so
they apply exactly the same rule to the same anchors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

# About HOLDOUT_SHARE of the training rows (rounded), at least 1 and at most HOLDOUT_MAX_ROWS, and
# none when the training data has fewer than HOLDOUT_MIN_TRAIN_ROWS rows.
HOLDOUT_SHARE = 0.05
HOLDOUT_MAX_ROWS = 1000
HOLDOUT_MIN_TRAIN_ROWS = 20
# When every anchor has more rows than the target, one anchor is still held out (so the job is
# evaluated) if it holds no more than this share of the rows.
HOLDOUT_MAX_SHARE = 0.2


def holdout_rows(total: int) -> int:
    """The target number of rows held out of ``total`` training rows (0: none). The rows actually
    held out (``held_out``) equal it unless anchors with many rows make that impossible."""
    if total < HOLDOUT_MIN_TRAIN_ROWS:
        return 0
    return min(HOLDOUT_MAX_ROWS, max(1, round(total * HOLDOUT_SHARE)))


def anchor_key(anchor: object) -> bytes:
    """The group an anchor belongs to: its text, ignoring case and surrounding spaces (what the
    job preflight's overlap check calls the same anchor), as a 16-byte digest."""
    text = anchor if isinstance(anchor, str) else str(anchor)
    return hashlib.blake2b(
        text.strip().casefold().encode("utf-8", "surrogatepass"), digest_size=16
    ).digest()


def _rank(key: bytes, seed: int) -> bytes:
    # A keyed hash, not Python's hash() (randomised per process) nor a RNG over row positions:
    # the order depends only on the seed and the anchor, so both processes agree on it.
    return hashlib.blake2b(key, digest_size=16, key=str(seed).encode("ascii")).digest()


def held_out_anchors(sizes: Mapping[bytes, int], seed: int) -> set[bytes]:
    """The anchors (``anchor_key``) held out, given each anchor's row count.

    Anchors are visited in an order seeded by ``seed``; each is held out when its rows still fit
    in the target (``holdout_rows`` of all rows), until the target is reached. When no anchor fits
    (every anchor has more rows than the target), the smallest anchor first in that order is held
    out if it has at most HOLDOUT_MAX_SHARE of the rows and HOLDOUT_MAX_ROWS rows; else none.
    """
    total = sum(sizes.values())
    target = holdout_rows(total)
    if target == 0:
        return set()
    order = sorted(sizes, key=lambda key: (_rank(key, seed), key))
    chosen: set[bytes] = set()
    held = 0
    for key in order:
        if held + sizes[key] <= target:
            chosen.add(key)
            held += sizes[key]
            if held == target:
                break
    if not chosen:
        smallest = min(order, key=lambda key: sizes[key])  # min keeps the first of equals
        if sizes[smallest] <= min(HOLDOUT_MAX_ROWS, int(total * HOLDOUT_MAX_SHARE)):
            chosen.add(smallest)
    return chosen


def anchor_sizes(anchors: Iterable[object]) -> dict[bytes, int]:
    """Rows per anchor (``anchor_key``)."""
    sizes: dict[bytes, int] = {}
    for anchor in anchors:
        key = anchor_key(anchor)
        sizes[key] = sizes.get(key, 0) + 1
    return sizes


def held_out_indices(anchors: Sequence[object], seed: int) -> list[int]:
    """The 0-based positions, ascending, of the rows held out of rows with these ``anchors``."""
    keys = [anchor_key(anchor) for anchor in anchors]
    sizes: dict[bytes, int] = {}
    for key in keys:
        sizes[key] = sizes.get(key, 0) + 1
    chosen = held_out_anchors(sizes, seed)
    return [i for i, key in enumerate(keys) if key in chosen]


__all__ = [
    "HOLDOUT_MAX_ROWS",
    "HOLDOUT_MAX_SHARE",
    "HOLDOUT_MIN_TRAIN_ROWS",
    "HOLDOUT_SHARE",
    "anchor_key",
    "anchor_sizes",
    "held_out_anchors",
    "held_out_indices",
    "holdout_rows",
]
