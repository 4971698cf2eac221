"""NLI pairs (premise, hypothesis, label) turned into triplets on upload, the way all-nli is built.

The premise is the anchor, an entailed hypothesis the positive, a contradicting hypothesis of
the same premise the negative. For each premise in order of first appearance, every
(entailment x contradiction) combination is emitted, the hypotheses of each label deduplicated
per premise in first-seen order; neutral pairs only count towards the premises.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.datasets.errors import DatasetFormatError, value_error

ENTAILMENT, NEUTRAL, CONTRADICTION = 0, 1, 2
_LABELS: dict[str, int] = {
    "entailment": ENTAILMENT,
    "neutral": NEUTRAL,
    "contradiction": CONTRADICTION,
    "0": ENTAILMENT,
    "1": NEUTRAL,
    "2": CONTRADICTION,
}
TRIPLET_KEYS: tuple[str, str, str] = ("anchor", "positive", "negative")


def parse_label(value: Any, column: str, line: int | None, row: int | None) -> int:
    """0/"entailment", 1/"neutral", 2/"contradiction" (strings case-insensitive) -> 0, 1, 2."""
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1, 2):
        return value
    if isinstance(value, str) and value.strip().lower() in _LABELS:
        return _LABELS[value.strip().lower()]
    if isinstance(value, str):
        shown = repr(value if len(value) <= 40 else value[:40] + "...")
    else:
        shown = json.dumps(value, default=str)[:40]
    raise value_error(
        line,
        row,
        column,
        f"must be an NLI label: 0 or entailment, 1 or neutral, 2 or contradiction (got {shown})",
    )


class NliTriplets:
    """Collects NLI pairs, then writes the triplets as JSON Lines.

    Grouping by premise needs memory proportional to the data (every distinct premise and
    hypothesis is held until the end): unlike plain validation this is not a bounded stream.
    """

    def __init__(self) -> None:
        # premise -> (entailed hypotheses, contradicting hypotheses); dicts keep first-seen
        # order and deduplicate. Premises keep their order of first appearance.
        self._premises: dict[str, tuple[dict[str, None], dict[str, None]]] = {}
        self.source_rows = 0

    def add(self, premise: str, hypothesis: str, label: int) -> None:
        self.source_rows += 1
        entailed, contradicting = self._premises.setdefault(premise, ({}, {}))
        if label == ENTAILMENT:
            entailed.setdefault(hypothesis, None)
        elif label == CONTRADICTION:
            contradicting.setdefault(hypothesis, None)

    def report(self) -> dict[str, Any]:
        """The conversion record kept on the dataset."""
        return {
            "from": "nli",
            "source_rows": self.source_rows,
            "premises": len(self._premises),
            "triplets": sum(len(e) * len(c) for e, c in self._premises.values()),
            "premises_without_pair": sum(1 for e, c in self._premises.values() if not e or not c),
        }

    def write(self, path: Path) -> dict[str, Any]:
        """Write the triplets to ``path`` (JSONL: anchor, positive, negative); the report.

        Raises DatasetFormatError when no premise has both an entailed and a contradicting
        hypothesis (nothing is written then).
        """
        report = self.report()
        if report["triplets"] == 0:
            raise DatasetFormatError(
                f"no triplets could be made from the {self.source_rows} NLI pair(s): no premise "
                "had both an entailed and a contradicting hypothesis (each triplet is a "
                "premise, an entailed hypothesis and a contradicting hypothesis of that premise)",
                {"premises": report["premises"]},
            )
        with Path(path).open("w", encoding="utf-8", newline="\n") as out:
            for premise, (entailed, contradicting) in self._premises.items():
                for positive in entailed:
                    for negative in contradicting:
                        row = dict(zip(TRIPLET_KEYS, (premise, positive, negative), strict=True))
                        out.write(json.dumps(row) + "\n")
        return report
