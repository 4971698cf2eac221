"""NLI pairs (premise, hypothesis, label) turned into triplets on upload, the way all-nli is built.

The premise is the anchor, an entailed hypothesis the positive, a contradicting hypothesis of
the same premise the negative. For each premise in order of first appearance, every
(entailment x contradiction) combination is emitted, the hypotheses of each label deduplicated
per premise in first-seen order; neutral pairs only count towards the premises.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
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

    Grouping by premise needs every distinct premise and hypothesis until the end. They are
    kept in a scratch SQLite file (in ``scratch_dir``, default the system's temporary folder),
    not in memory, so a large NLI upload costs disk, not API memory. Use it as a context
    manager (or call ``close()``): the scratch file is removed then.
    """

    def __init__(self, scratch_dir: Path | None = None) -> None:
        fd, name = tempfile.mkstemp(prefix="nli-", suffix=".sqlite", dir=scratch_dir)
        os.close(fd)
        self._path = Path(name)
        self._db = sqlite3.connect(self._path, isolation_level=None)
        # Scratch data, rebuilt on failure: no journal, no fsync; a small page cache.
        self._db.executescript(
            """
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            PRAGMA cache_size = -16384;
            BEGIN;
            CREATE TABLE premises (seq INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
            CREATE TABLE hypotheses (
                premise INTEGER NOT NULL, label INTEGER NOT NULL, text TEXT NOT NULL,
                seq INTEGER PRIMARY KEY, UNIQUE (premise, label, text)
            );
            """
        )
        self.source_rows = 0

    def __enter__(self) -> NliTriplets:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()
        self._path.unlink(missing_ok=True)

    def add(self, premise: str, hypothesis: str, label: int) -> None:
        self.source_rows += 1
        # Premises and hypotheses keep their order of first appearance (their seq).
        self._db.execute("INSERT OR IGNORE INTO premises (text) VALUES (?)", (premise,))
        if label in (ENTAILMENT, CONTRADICTION):
            self._db.execute(
                "INSERT OR IGNORE INTO hypotheses (premise, label, text) "
                "SELECT seq, ?, ? FROM premises WHERE text = ?",
                (label, hypothesis, premise),
            )

    def report(self) -> dict[str, Any]:
        """The conversion record kept on the dataset."""
        premises, triplets, without_pair = self._db.execute(
            """
            SELECT count(*), coalesce(sum(e * c), 0), coalesce(sum(e = 0 OR c = 0), 0)
            FROM (
                SELECT p.seq,
                       count(CASE WHEN h.label = ? THEN 1 END) AS e,
                       count(CASE WHEN h.label = ? THEN 1 END) AS c
                FROM premises p LEFT JOIN hypotheses h ON h.premise = p.seq
                GROUP BY p.seq
            )
            """,
            (ENTAILMENT, CONTRADICTION),
        ).fetchone()
        return {
            "from": "nli",
            "source_rows": self.source_rows,
            "premises": premises,
            "triplets": triplets,
            "premises_without_pair": without_pair,
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
        rows = self._db.execute(
            """
            SELECT p.text, e.text, c.text
            FROM premises p
            JOIN hypotheses e ON e.premise = p.seq AND e.label = ?
            JOIN hypotheses c ON c.premise = p.seq AND c.label = ?
            ORDER BY p.seq, e.seq, c.seq
            """,
            (ENTAILMENT, CONTRADICTION),
        )
        with Path(path).open("w", encoding="utf-8", newline="\n") as out:
            for triplet in rows:
                out.write(json.dumps(dict(zip(TRIPLET_KEYS, triplet, strict=True))) + "\n")
        return report
