"""The job-time preflight report: what an uploaded train/eval/test combination will do to a job.

Pure: takes stored files (path, format, text columns) and hyperparameters, never the database.
The stored files are streamed with the row readers of :mod:`app.datasets.readers`; memory is
bounded by one 16-byte digest per training row (and per training anchor), never the texts.

Report: ``{"steps", "train_rows", "holdout_rows", "tokens", "findings": [...],
"skipped": [...]}``.

* ``steps``: the optimisation steps the job will run: ``max_steps`` when given, else
  ``ceil(train_rows / batch_size) * epochs``, where ``train_rows`` are the rows trained on (when
  the job has no eval set, the worker first holds out rows by anchor: the rule of
  :mod:`rules.holdout`, applied here to the stored file's anchors, so ``holdout_rows``
  is exactly what the worker will hold out). Null when the training data is on the Hub.
* ``tokens``: token length distribution of each uploaded dataset under the base model's tokenizer
  and the texts the effective max_seq_length truncates (:mod:`app.jobs.tokens`); a
  ``truncated_texts`` warning above 1% of a dataset's texts. Null, with a ``skipped`` entry for
  ``base_model``, when the API cannot read the tokenizer.
* ``train_test_overlap`` / ``train_eval_overlap``: test (eval) rows whose texts also make up a
  training row (anchor, positive and, where training rows have negatives, the first negative;
  ignoring case and surrounding spaces), and test (eval) rows whose anchor is also a training
  anchor; held-out training rows are not training rows. ``count`` is the rows with either
  overlap (a whole-row match is an anchor match too); ``details`` has ``rows``, ``anchors`` and
  ``of`` (the test/eval rows). A ``warning``, or an ``error`` when every test (eval) row is a
  training row.
* ``batch_false_negatives``: training rows sharing their positive with another row (from the
  training dataset's upload-time preflight), and how many batches of an epoch would hold two of
  them if batches were drawn at random. A ``warning``.
* ``too_few_train_rows``: fewer than 2 rows left to train on. An ``error``.

Hub datasets cannot be read by the API: they are listed in ``skipped``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.datasets.formats import DatasetFormat
from app.datasets.preflight import MAX_EXAMPLES, cell_text, digest, normalise, shorten
from app.jobs.tokens import (
    TRUNCATED_TEXTS,
    RoleData,
    TokenizerUnavailable,
    load_model_tokenizer,
    token_report,
)
from rules.errors import short_reason
from rules.holdout import anchor_key, anchor_sizes, held_out_anchors
from rules.steps import total_steps

logger = logging.getLogger(__name__)

WARNING = "warning"
ERROR = "error"

TRAIN_TEST_OVERLAP = "train_test_overlap"
TRAIN_EVAL_OVERLAP = "train_eval_overlap"
BATCH_FALSE_NEGATIVES = "batch_false_negatives"
TOO_FEW_TRAIN_ROWS = "too_few_train_rows"
MIN_TRAIN_ROWS = 2

HUB_SKIPPED = "a Hugging Face Hub dataset: the API cannot read it (the worker loads it)"


@dataclass(frozen=True)
class StoredData:
    """An uploaded dataset as stored: the file, its stored format and its text columns."""

    path: Path
    format: DatasetFormat
    text_columns: Sequence[str]
    rows: int


def has_errors(report: Mapping[str, Any]) -> bool:
    return any(f["severity"] == ERROR for f in report.get("findings", []))


def _steps(train_rows: int, hyperparameters: Mapping[str, Any]) -> int:
    return total_steps(
        train_rows,
        int(hyperparameters["batch_size"]),
        int(hyperparameters["epochs"]),
        hyperparameters.get("max_steps"),
    )


def _anchors(data: StoredData) -> Iterable[str]:
    column = data.text_columns[0]
    from app.datasets.readers import open_reader  # lazy: pyarrow costs the idle API ~60 MB

    with open_reader(Path(data.path), data.format) as reader:
        for _line, _row, values in reader.rows((column,)):
            yield cell_text(values[column])


def _held_out(data: StoredData, seed: int) -> tuple[set[bytes], int, int]:
    """(the training anchors (``anchor_key``) the worker will hold out with this seed, the rows
    held out, the rows read)."""
    sizes = anchor_sizes(_anchors(data))
    held = held_out_anchors(sizes, seed)
    return held, sum(sizes[key] for key in held), sum(sizes.values())


class _TrainIndex:
    """Digests of the training rows (first ``width`` texts) and anchors, with their row;
    rows whose anchor is in ``held_out`` are left out (they are not trained on)."""

    def __init__(self, data: StoredData, width: int, held_out: set[bytes]) -> None:
        self.rows: dict[bytes, int] = {}
        self.anchors: dict[bytes, int] = {}
        columns = tuple(data.text_columns)
        self.width = width
        from app.datasets.readers import open_reader  # lazy: pyarrow costs the idle API ~60 MB

        with open_reader(Path(data.path), data.format) as reader:
            for _line, row, values in reader.rows(columns):
                raw = [cell_text(values[c]) for c in columns[:width]]
                if held_out and anchor_key(raw[0]) in held_out:
                    continue
                texts = [normalise(t) for t in raw]
                self.rows.setdefault(digest(texts), row)
                self.anchors.setdefault(digest(texts[:1]), row)


def _overlap(code: str, field: str, data: StoredData, train: _TrainIndex) -> dict[str, Any] | None:
    columns = tuple(data.text_columns)
    total = row_matches = anchor_matches = 0
    examples: list[dict[str, Any]] = []
    anchor_examples: list[dict[str, Any]] = []
    from app.datasets.readers import open_reader  # lazy: pyarrow costs the idle API ~60 MB

    with open_reader(Path(data.path), data.format) as reader:
        for _line, row, values in reader.rows(columns):
            total = row
            texts = {c: cell_text(values[c]) for c in columns}
            normalised = [normalise(t) for t in texts.values()]
            same_row = train.rows.get(digest(normalised[: train.width]))
            same_anchor = train.anchors.get(digest(normalised[:1]))
            if same_row is None and same_anchor is None:
                continue
            anchor_matches += 1
            example: dict[str, Any] = {
                "row": row,
                "texts": {c: shorten(t) for c, t in texts.items()},
            }
            if same_row is not None:
                row_matches += 1
                if len(examples) < MAX_EXAMPLES:
                    examples.append({**example, "match": "row", "same_as_train_row": same_row})
            elif len(anchor_examples) < MAX_EXAMPLES:
                anchor_examples.append(
                    {**example, "match": "anchor", "same_as_train_row": same_anchor}
                )
    if not anchor_matches:
        return None
    everything = row_matches == total
    which = field.removesuffix("_dataset")
    if everything:
        message = (
            f"Every {which} row ({total}) is also a training row (ignoring case and surrounding "
            f"spaces): its metrics would measure memorisation, not generalisation. Use a "
            f"{which} set disjoint from the training data."
        )
    else:
        message = (
            f"{anchor_matches} of the {total} {which} rows overlap the training data (ignoring "
            f"case and surrounding spaces): {row_matches} are whole training rows and "
            f"{anchor_matches} have an anchor that is also a training anchor. Leakage inflates "
            f"the {which} metrics; split by anchor so no {which} anchor is trained on."
        )
    return {
        "code": code,
        "severity": ERROR if everything else WARNING,
        "count": anchor_matches,
        "message": message,
        "examples": (examples + anchor_examples)[:MAX_EXAMPLES],
        "details": {"rows": row_matches, "anchors": anchor_matches, "of": total},
    }


def _batch_false_negatives(
    shared_rows: int, train_rows: int, batch_size: int
) -> dict[str, Any] | None:
    if shared_rows <= 0 or train_rows < 2:
        return None
    batch = min(batch_size, train_rows)
    batches = math.ceil(train_rows / batch_size)
    # Lower bound: the sharing rows taken as pairs (larger groups collide more often). A given
    # pair lands in one random batch with probability (batch - 1) / (train_rows - 1).
    pairs = shared_rows // 2
    per_batch = pairs * (batch - 1) / (train_rows - 1) / batches
    expected = round(batches * (1 - math.exp(-per_batch)), 1)
    message = (
        f"{shared_rows} training row(s) share their positive with another row. With "
        f"batch_size {batch_size}, random batches would put two of them together in about "
        f"{expected} of the {batches} batches of an epoch (at least; more where more than two "
        "rows share a positive), and MNR would score each one's positive as a wrong answer for "
        "the other (a false negative). Training uses the no-duplicates batch sampler, which "
        "keeps rows with an identical text out of one batch: it avoids these false negatives "
        "at the cost of batch composition (the batches are no longer drawn at random, and "
        "positives that differ only in case or spaces are not caught). Deduplicate the "
        "positives if they are a large share of the rows."
    )
    return {
        "code": BATCH_FALSE_NEGATIVES,
        "severity": WARNING,
        "count": shared_rows,
        "message": message,
        "examples": [],
        "details": {
            "batch_size": batch_size,
            "batches_per_epoch": batches,
            "expected_batches_without_sampler": expected,
        },
    }


def _add_tokens(
    report: dict[str, Any],
    base_model: str,
    model_dirs: Sequence[Path],
    hyperparameters: Mapping[str, Any],
    *datasets: StoredData | None,
) -> None:
    roles = [
        RoleData(role, d.path, d.format, tuple(d.text_columns), d.rows)
        for role, d in zip(("train", "eval", "test"), datasets, strict=True)
        if d is not None
    ]
    if not roles:
        return
    requested = hyperparameters.get("max_seq_length")
    try:
        model = load_model_tokenizer(
            base_model, model_dirs, int(requested) if requested is not None else None
        )
        section, finding = token_report(model, roles, base_model)
    except TokenizerUnavailable as exc:
        report["skipped"].append({"field": "base_model", "reason": f"token lengths: {exc}"})
        return
    except Exception as exc:
        # Token lengths are advice: a tokenizer that fails on some text must not fail the job
        # creation with a 500 (the worker, with the full model, is the judge).
        logger.warning("token length preflight failed for %r", base_model, exc_info=True)
        report["skipped"].append(
            {"field": "base_model", "reason": f"token lengths failed: {short_reason(exc)}"}
        )
        return
    report["tokens"] = section
    if finding is not None:
        report["findings"].append(finding)


def job_preflight(
    *,
    train: StoredData | None,
    eval: StoredData | None,
    test: StoredData | None,
    has_eval: bool,
    hyperparameters: Mapping[str, Any],
    shared_positive_rows: int | None = None,
    skipped: Sequence[Mapping[str, str]] = (),
    base_model: str | None = None,
    model_dirs: Sequence[Path] = (),
) -> dict[str, Any]:
    """The job's preflight report. ``train``/``eval``/``test`` are None when not uploaded data
    (Hub datasets: list them in ``skipped``); ``has_eval`` says whether the job names an eval
    set at all (uploaded or not): without one the worker holds out training rows.
    ``shared_positive_rows`` is the ``duplicate_positives`` count of the training dataset's own
    preflight (None when unknown). ``base_model`` (resolved in ``model_dirs``, else the local
    Hugging Face cache) gives the token lengths; None leaves ``tokens`` null."""
    findings: list[dict[str, Any]] = []
    report: dict[str, Any] = {
        "steps": None,
        "train_rows": None,
        "holdout_rows": None,
        "tokens": None,
        "findings": findings,
        "skipped": [dict(s) for s in skipped],
    }
    if base_model is not None:
        _add_tokens(report, base_model, model_dirs, hyperparameters, train, eval, test)
    if train is None:
        return report
    held_anchors: set[bytes] = set()
    held = 0
    total = train.rows
    if not has_eval:
        held_anchors, held, total = _held_out(train, int(hyperparameters.get("seed", 42)))
    rows = total - held
    report.update(train_rows=rows, holdout_rows=held, steps=_steps(rows, hyperparameters))
    if rows < MIN_TRAIN_ROWS:
        findings.append(
            {
                "code": TOO_FEW_TRAIN_ROWS,
                "severity": ERROR,
                "count": rows,
                "message": (
                    f"Only {rows} training row(s) would be trained on (of {total}"
                    f"{f', {held} held out as the eval set' if held else ''}); MNR needs at "
                    f"least {MIN_TRAIN_ROWS} rows, since the other rows of a batch are the "
                    "negatives. Upload more training data."
                ),
                "examples": [],
                "details": {"rows": rows, "uploaded_rows": total, "held_out": held},
            }
        )
    if test is not None or eval is not None:
        index = _TrainIndex(train, min(len(train.text_columns), 3), held_anchors)
        for code, field, data in (
            (TRAIN_TEST_OVERLAP, "test_dataset", test),
            (TRAIN_EVAL_OVERLAP, "eval_dataset", eval),
        ):
            if data is not None and (finding := _overlap(code, field, data, index)):
                findings.append(finding)
    if shared_positive_rows:
        finding = _batch_false_negatives(
            shared_positive_rows, rows, int(hyperparameters["batch_size"])
        )
        if finding:
            findings.append(finding)
    return report


__all__ = [
    "BATCH_FALSE_NEGATIVES",
    "ERROR",
    "TOO_FEW_TRAIN_ROWS",
    "TRAIN_EVAL_OVERLAP",
    "TRAIN_TEST_OVERLAP",
    "TRUNCATED_TEXTS",
    "WARNING",
    "StoredData",
    "has_errors",
    "job_preflight",
]
