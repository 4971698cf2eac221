"""The upload-time ("cheap") preflight report: silent data problems found in a stored dataset.

The stored file (for NLI uploads the converted triplets) is read again as a stream with the
row readers of :mod:`app.datasets.readers`. Memory is bounded by what is remembered per row:
a 16-byte BLAKE2b digest of the row's texts and of its positive (with the number of the row
that first had it), never the texts themselves, plus at most ``MAX_EXAMPLES`` example rows per
finding.

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.datasets.formats import DatasetFormat
from app.datasets.readers import open_reader

MAX_EXAMPLES = 3
MAX_TEXT_CHARS = 200
SEVERITY = "warning"

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


def digest(parts: Iterable[str]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
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


@dataclass
class _Finding:
    code: str
    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, row: int, texts: Mapping[str, str], same_as_row: int | None = None) -> None:
        self.count += 1
        if len(self.examples) < MAX_EXAMPLES:
            example: dict[str, Any] = {
                "row": row,
                "texts": {column: shorten(text) for column, text in texts.items()},
            }
            if same_as_row is not None:
                example["same_as_row"] = same_as_row
            self.examples.append(example)

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


def preflight_report(
    path: Path, format: DatasetFormat, kind: str, text_columns: Sequence[str]
) -> dict[str, Any]:
    """Read the stored (already validated) file at ``path`` and return its preflight report.

    ``kind`` and ``text_columns`` are the dataset's: anchor, positive, negatives... for
    triplet/pair data; sentence1, sentence2, score for STS (the score is not a text).
    """
    texts_columns = tuple(text_columns[:2]) if kind == "sts" else tuple(text_columns)
    codes = checked_codes(kind, text_columns)
    findings = {code: _Finding(code) for code in codes}
    first, second = texts_columns[0], texts_columns[1]
    negatives = texts_columns[2:]
    equal_code = SENTENCE1_EQUALS_SENTENCE2 if kind == "sts" else ANCHOR_EQUALS_POSITIVE
    track_positives = DUPLICATE_POSITIVES in findings

    seen_rows: dict[bytes, int] = {}  # digest of the row's texts -> first row
    seen_positives: dict[bytes, int] = {}  # digest of the normalised positive -> first row
    shared_positives: set[bytes] = set()  # positives seen in more than one row
    rows = 0
    with open_reader(Path(path), format) as reader:
        for _line, row, values in reader.rows(texts_columns):
            rows = row
            texts = {column: cell_text(values[column]) for column in texts_columns}
            key = digest(texts.values())
            earlier = seen_rows.setdefault(key, row)
            if earlier != row:
                findings[DUPLICATE_ROWS].add(row, texts, earlier)
            anchor = normalise(texts[first])
            positive = normalise(texts[second])
            if anchor == positive:
                findings[equal_code].add(row, texts)
            if negatives and any(normalise(texts[n]) == anchor for n in negatives):
                findings[ANCHOR_EQUALS_NEGATIVE].add(row, texts)
            if track_positives:
                pkey = digest((positive,))
                earlier = seen_positives.setdefault(pkey, row)
                if earlier != row:
                    duplicate = findings[DUPLICATE_POSITIVES]
                    if pkey not in shared_positives:
                        # The first row with this positive counts too (no example for it).
                        shared_positives.add(pkey)
                        duplicate.count += 1
                    duplicate.add(row, texts, earlier)
    return {
        "rows": rows,
        "checked": list(codes),
        "findings": [f.report() for f in findings.values() if f.count],
    }


__all__ = ["MAX_EXAMPLES", "MAX_TEXT_CHARS", "checked_codes", "normalise", "preflight_report"]
