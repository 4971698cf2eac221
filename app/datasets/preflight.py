"""The upload-time ("cheap") preflight report: silent data problems found in a stored dataset.

The stored file (for NLI uploads the converted triplets) is read again as a stream with the
row readers of :mod:`app.datasets.readers`; nothing but a few numbers per row is remembered,
never the texts.

Memory: the repeat findings remember one 8-byte BLAKE2b digest a row of the row's texts and
one of its normalised positive, each in an ``array('Q')`` (index = row - 1). After the pass
each array is sorted in Arrow (``sort_indices``, stable: 8 bytes a row for the indices, ~4 more
inside the sort) and its sorted neighbours compared a chunk at a time, one array after the
other, so the peak is at most ``BYTES_PER_ROW`` = 32 bytes a row (measured ~29: 2 x 8.5 for the
two growing arrays, then 8 + 4 for sorting the first while the second is kept) plus under 1 MB:
320 MB for the default 10 million rows (``EMBEDTUNE_MAX_DATASET_ROWS``). On top of what reading
holds (:mod:`app.datasets.readers`: baseline + 256 MB), so an upload stays under baseline +
256 MB + 32 bytes x ``EMBEDTUNE_MAX_DATASET_ROWS`` (~0.6 GB over the baseline at the default).

Example rows (at most ``MAX_EXAMPLES`` a finding) are kept as found for the equality findings;
for the repeat findings their texts are read in one more pass over the file, stopped after the
last example row, only when there is a repeat. With 8-byte digests two different rows (or
positives) are taken for equal when their digests collide: a chance of ~n^2 / 2^65, 3 in a
million for 10 million rows, and someone crafting a collision (~2^32 tries) only misleads the
report on their own upload; acceptable for a warning.

Findings (every one a ``warning``: problems that make a file unusable are 422s at upload):

* ``duplicate_rows``: the row's text columns (``text_columns`` in order; the STS score is not
  a text) repeat an earlier row exactly; the repeats are counted, not the first occurrence.
* ``anchor_equals_positive`` / ``anchor_equals_negative`` (triplet and pair data) and
  ``sentence1_equals_sentence2`` (STS): the two texts are equal after ``strip()`` and
  ``casefold()``; a row counts once however many of its negatives equal the anchor.
* ``duplicate_positives`` (triplet and pair data): rows whose positive (after ``strip()`` and
  ``casefold()``) is also another row's positive, every such row counted, the first included.
  In one MNR batch such rows are false negatives of each other; how likely that is depends on
  the batch size, which is only known when a job is created.

Example rows carry the row number (1-based data row of the stored file: for NLI uploads the
triplet number), the texts keyed by the stored file's column names (truncated to
``MAX_TEXT_CHARS``) and, for the repeat findings, ``same_as_row``: the row first seen with it.
Findings with a count of 0 are left out; ``checked`` lists every code that was looked for.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.datasets.formats import DatasetFormat

MAX_EXAMPLES = 3
MAX_TEXT_CHARS = 200
SEVERITY = "warning"
# The most the repeat findings add per row of the file (see the module docstring).
BYTES_PER_ROW = 32
# Sorted positions compared at a time (a few bytes each in Arrow while compared).
_CHUNK = 1 << 15

DUPLICATE_ROWS = "duplicate_rows"
ANCHOR_EQUALS_POSITIVE = "anchor_equals_positive"
ANCHOR_EQUALS_NEGATIVE = "anchor_equals_negative"
SENTENCE1_EQUALS_SENTENCE2 = "sentence1_equals_sentence2"
DUPLICATE_POSITIVES = "duplicate_positives"

_MESSAGES: dict[str, str] = {
    DUPLICATE_ROWS: (
        "{count} row(s) repeat the texts of an earlier row exactly. Repeats are trained on "
        "more than once (over-weighting them), leak between training and held-out rows, and "
        "two copies in one MNR batch are false negatives of each other. Remove the repeats "
        "unless the weighting is intended."
    ),
    ANCHOR_EQUALS_POSITIVE: (
        "{count} row(s) have a positive equal to the anchor (ignoring case and surrounding "
        "spaces). Such rows teach nothing beyond 'a text matches itself' and inflate the "
        "evaluation accuracy. Drop them or pair the anchor with a real positive."
    ),
    ANCHOR_EQUALS_NEGATIVE: (
        "{count} row(s) have a negative equal to the anchor (ignoring case and surrounding "
        "spaces). The loss then pushes a text away from itself, which works against training. "
        "Drop or replace those negatives; check how the hard negatives were mined."
    ),
    SENTENCE1_EQUALS_SENTENCE2: (
        "{count} row(s) have sentence1 equal to sentence2 (ignoring case and surrounding "
        "spaces). Their cosine similarity is always 1 whatever the score says. Check their "
        "scores, or drop them."
    ),
    DUPLICATE_POSITIVES: (
        "{count} row(s) share their positive (ignoring case and surrounding spaces) with "
        "another row. When two of them land in one MNR batch, each one's positive is scored "
        "as a wrong answer for the other (a false negative). Expected where several anchors "
        "share an answer; if it is a large share of the rows, deduplicate the positives. The "
        "chance of two in one batch grows with batch_size."
    ),
}


def normalise(text: str) -> str:
    """What 'equal' means for the equality findings: surrounding spaces and case ignored."""
    return text.strip().casefold()


def digest(parts: Iterable[str], digest_size: int = 16) -> bytes:
    """The BLAKE2b digest of the texts, length-prefixed: 16 bytes unless told otherwise."""
    h = hashlib.blake2b(digest_size=digest_size)
    for part in parts:
        encoded = part.encode("utf-8", "surrogatepass")
        # Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        h.update(len(encoded).to_bytes(8, "little"))
        h.update(encoded)
    return h.digest()


def cell_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def shorten(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1] + "\u2026"


def _example(row: int, texts: Mapping[str, str], same_as_row: int | None = None) -> dict[str, Any]:
    example: dict[str, Any] = {
        "row": row,
        "texts": {column: shorten(text) for column, text in texts.items()},
    }
    if same_as_row is not None:
        example["same_as_row"] = same_as_row
    return example


@dataclass
class _Finding:
    code: str
    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, row: int, texts: Mapping[str, str], same_as_row: int | None = None) -> None:
        self.count += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(_example(row, texts, same_as_row))

    def report(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": SEVERITY,
            "count": self.count,
            "message": _MESSAGES[self.code].format(count=self.count),
            "examples": self.examples,
        }


def checked_codes(kind: str, text_columns: Sequence[str]) -> tuple[str, ...]:
    """The finding codes looked for in a dataset of ``kind`` with these text columns."""
    if kind == "sts":
        return (DUPLICATE_ROWS, SENTENCE1_EQUALS_SENTENCE2)
    codes = [DUPLICATE_ROWS, ANCHOR_EQUALS_POSITIVE]
    if kind == "triplet" and len(text_columns) > 2:
        codes.append(ANCHOR_EQUALS_NEGATIVE)
    codes.append(DUPLICATE_POSITIVES)
    return tuple(codes)


@dataclass
class _Repeats:
    """Where a digest array repeats itself (rows 1-based)."""

    repeats: int = 0  # rows whose digest an earlier row had
    groups: int = 0  # digests had by more than one row
    examples: list[tuple[int, int]] = field(default_factory=list)  # (row, first row), row order


def find_repeats(digests: array[int]) -> _Repeats:
    """Count the repeats in ``digests`` (``array('Q')``, index = row - 1) and find the first
    ``MAX_EXAMPLES`` of them in row order with the first row that had each one's digest.

    Sorts row indices by digest in Arrow (stable, so each run of equal digests starts with its
    first row), then compares sorted neighbours ``_CHUNK`` positions at a time: besides the
    array, 8 bytes a row for the indices (and ~4 inside the sort), not more.
    """
    import pyarrow as pa  # lazy: pyarrow costs the idle API ~60 MB
    import pyarrow.compute as pc

    found = _Repeats()
    n = len(digests)
    if n < 2:
        return found
    values = pa.Array.from_buffers(pa.uint64(), n, [None, pa.py_buffer(digests)])
    order = pc.sort_indices(values)
    smallest: list[int] = []  # the smallest repeat row indices seen, ascending
    previous = False  # whether the position before the chunk repeats its predecessor
    for start in range(1, n, _CHUNK):
        indices = order.slice(start - 1, _CHUNK + 1)  # one position before the chunk
        sorted_values = values.take(indices)
        # same[i]: sorted position start + i has the digest of position start + i - 1.
        same = pc.equal(sorted_values.slice(1), sorted_values.slice(0, len(sorted_values) - 1))
        repeats = same.true_count
        if repeats:
            found.repeats += repeats
            # A group of 2 or more begins where a repeat follows a non-repeat.
            found.groups += pc.and_not(same.slice(1), same.slice(0, len(same) - 1)).true_count
            found.groups += bool(same[0].as_py()) and not previous
            rows = pc.filter(indices.slice(1), same)
            lowest = rows.take(pc.bottom_k_unstable(rows, MAX_EXAMPLES))  # (gives indices)
            smallest = sorted(smallest + lowest.to_pylist())
            del smallest[MAX_EXAMPLES:]
        previous = bool(same[len(same) - 1].as_py())
    del values, order, indices, sorted_values, same
    # The first row with a digest is its first index in row order.
    found.examples = [(index + 1, digests.index(digests[index]) + 1) for index in smallest]
    return found


def _example_texts(
    path: Path, format: DatasetFormat, columns: Sequence[str], rows: set[int]
) -> dict[int, dict[str, str]]:
    """The texts of the given rows, read from the file up to the last of them."""
    texts: dict[int, dict[str, str]] = {}
    if not rows:
        return texts
    last = max(rows)
    from app.datasets.readers import open_reader  # lazy: pyarrow costs the idle API ~60 MB

    with open_reader(Path(path), format) as reader:
        for _line, row, values in reader.rows(columns):
            if row in rows:
                texts[row] = {column: cell_text(values[column]) for column in columns}
            if row >= last:
                break
    return texts


def preflight_report(
    path: Path, format: DatasetFormat, kind: str, text_columns: Sequence[str]
) -> dict[str, Any]:
    """Read the stored (already validated) file at ``path`` and return its preflight report.

    ``kind`` and ``text_columns`` are the dataset's: anchor, positive, negatives... for
    triplet/pair data; sentence1, sentence2, score for STS (the score is not a text).
    Memory: at most ``BYTES_PER_ROW`` bytes a row besides the reading (module docstring).
    """
    texts_columns = tuple(text_columns[:2]) if kind == "sts" else tuple(text_columns)
    codes = checked_codes(kind, text_columns)
    findings = {code: _Finding(code) for code in codes}
    first, second = texts_columns[0], texts_columns[1]
    negatives = texts_columns[2:]
    equal_code = SENTENCE1_EQUALS_SENTENCE2 if kind == "sts" else ANCHOR_EQUALS_POSITIVE
    track_positives = DUPLICATE_POSITIVES in findings

    row_digests = array("Q")  # 8-byte digest of row r's texts at r - 1
    positive_digests = array("Q")  # 8-byte digest of row r's normalised positive at r - 1
    rows = 0
    from app.datasets.readers import open_reader  # lazy: pyarrow costs the idle API ~60 MB

    with open_reader(Path(path), format) as reader:
        for _line, row, values in reader.rows(texts_columns):
            rows = row
            texts = {column: cell_text(values[column]) for column in texts_columns}
            row_digests.frombytes(digest(texts.values(), digest_size=8))
            anchor = normalise(texts[first])
            positive = normalise(texts[second])
            if anchor == positive:
                findings[equal_code].add(row, texts)
            if negatives and any(normalise(texts[n]) == anchor for n in negatives):
                findings[ANCHOR_EQUALS_NEGATIVE].add(row, texts)
            if track_positives:
                positive_digests.frombytes(digest((positive,), digest_size=8))
    if len(row_digests) != rows:  # the readers number rows 1, 2, 3...
        raise AssertionError(f"{len(row_digests)} rows read, the last numbered {rows}")

    # One array at a time: each is let go once its repeats are found.
    repeated_rows = find_repeats(row_digests)
    del row_digests
    shared_positives = find_repeats(positive_digests)
    del positive_digests

    examples = repeated_rows.examples + shared_positives.examples
    texts_of = _example_texts(path, format, texts_columns, {row for row, _ in examples})
    findings[DUPLICATE_ROWS].count = repeated_rows.repeats
    for row, same_as_row in repeated_rows.examples:
        findings[DUPLICATE_ROWS].examples.append(_example(row, texts_of[row], same_as_row))
    if track_positives:
        # Every row sharing its positive counts, the first included (no example for it).
        duplicate = findings[DUPLICATE_POSITIVES]
        duplicate.count = shared_positives.repeats + shared_positives.groups
        for row, same_as_row in shared_positives.examples:
            duplicate.examples.append(_example(row, texts_of[row], same_as_row))
    return {
        "rows": rows,
        "checked": list(codes),
        "findings": [f.report() for f in findings.values() if f.count],
    }


__all__ = [
    "BYTES_PER_ROW",
    "MAX_EXAMPLES",
    "MAX_TEXT_CHARS",
    "checked_codes",
    "find_repeats",
    "normalise",
    "preflight_report",
]
