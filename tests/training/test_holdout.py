"""Without eval data, a small seeded share of the training rows is held out as the eval set,
grouped by anchor: no held-out anchor is trained on."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from datasets import Dataset
from sentence_transformers import SentenceTransformer

from app.jobs.preflight import StoredData, job_preflight
from rules.holdout import (
    HOLDOUT_MAX_SHARE,
    anchor_key,
    anchor_sizes,
    held_out_anchors,
    held_out_indices,
    holdout_rows,
)
from tests.support.tiny_model import SNLI_TRIPLETS, read_jsonl, write_jsonl
from tests.training.conftest import local
from worker.training.data import (
    HOLDOUT_MAX_ROWS,
    HOLDOUT_MIN_TRAIN_ROWS,
    HOLDOUT_SHARE,
    load_train_data,
    split_holdout,
)
from worker.training.evaluation import build_triplet_evaluator, evaluate
from worker.training.pipeline import run
from worker.training.spec import Holdout, Hyperparameters, LocalData, MetricPoint

REPO = Path(__file__).resolve().parents[2]
TRIPLET = ("anchor", "positive", "negative")


def row_set(data: Dataset) -> set[tuple[str, ...]]:
    return set(zip(*(data[c] for c in data.column_names), strict=True))


def numbered(rows: int) -> Dataset:
    return Dataset.from_dict({"anchor": [f"a{i}" for i in range(rows)], "positive": ["p"] * rows})


@pytest.mark.parametrize(
    ("rows", "held"),
    [(20, 1), (29, 1), (96, 5), (600, 30), (19_999, 1000), (50_000, 1000)],
)
def test_holdout_size(rows, held):
    train, holdout, info = split_holdout(numbered(rows), seed=42)
    assert info == Holdout(rows=held, share=HOLDOUT_SHARE, seed=42)
    assert holdout is not None and len(holdout) == held
    assert len(train) == rows - held
    assert held <= HOLDOUT_MAX_ROWS


def test_too_little_data_holds_nothing_out():
    data = numbered(HOLDOUT_MIN_TRAIN_ROWS - 1)
    train, holdout, info = split_holdout(data, seed=42)
    assert holdout is None and info is None and train is data


def test_held_out_rows_are_disjoint_and_seeded():
    data = numbered(400)
    train, holdout, _ = split_holdout(data, seed=7)
    assert holdout is not None
    held, kept = set(holdout["anchor"]), set(train["anchor"])
    assert held.isdisjoint(kept) and held | kept == set(data["anchor"])
    # Both keep the data's order.
    assert train["anchor"] == [a for a in data["anchor"] if a in kept]
    # The same seed holds out the same rows; another seed other rows; not just the first ones.
    assert split_holdout(data, seed=7)[1]["anchor"] == holdout["anchor"]  # type: ignore[index]
    assert split_holdout(data, seed=8)[1]["anchor"] != holdout["anchor"]  # type: ignore[index]
    assert holdout["anchor"] != data["anchor"][:20]


def test_a_job_without_eval_data_evaluates_on_rows_it_did_not_train_on(
    tmp_path, make_spec, data_files
):
    """Triplets, no eval or test data: the held-out triplets are the eval set and the metrics."""
    points: list[MetricPoint] = []
    spec = make_spec(
        tmp_path,
        local(data_files["train_triplets"]),
        # eval_steps given: every step (without it, what fits in a tenth of the training time).
        hyperparameters=Hyperparameters(
            batch_size=8, learning_rate=1e-3, max_steps=3, seed=11, eval_steps=1
        ),
    )
    result = run(spec, lambda p: None, points.append)

    assert result.holdout == Holdout(rows=5, share=0.05, seed=11)  # round(96 * 5%)
    assert (result.train_rows, result.eval_rows, result.test_rows) == (91, 5, None)
    assert result.evaluated_on == "holdout" and result.metrics is not None

    # The trainer got the other 91 rows to train on (sentence-transformers' own card section
    # counts what it was given); the 5 held-out rows went to the evaluator, as the card says.
    card = (result.model_dir / "README.md").read_text()
    assert "Size: 91 training samples" in card
    assert "| eval | 5 (held out of the training data: 5% of its rows, seed 11" in card

    # The metrics are those of exactly the rows split_holdout picks with the job's seed.
    full = load_train_data(spec.train, tmp_path / "reload")
    kept, held, _ = split_holdout(full, seed=11)
    assert held is not None
    assert row_set(held).isdisjoint(row_set(kept)) and len(row_set(held)) == 5
    saved = SentenceTransformer(str(result.model_dir), device="cpu")
    expected = evaluate(saved, build_triplet_evaluator(held, "check"))
    assert result.metrics["fine_tuned"] == pytest.approx(expected, abs=1e-6)
    evals = [p for p in points if p.kind == "eval"]
    assert [p.step for p in evals] == [0, 1, 2, 3]
    assert {k: evals[-1].values[k] for k in expected} == pytest.approx(expected, abs=1e-6)


def test_eval_data_given_means_nothing_is_held_out(tiny_run):
    result = tiny_run.result
    assert result.holdout is None
    assert (result.train_rows, result.eval_rows, result.test_rows) == (96, 60, 80)
    assert result.evaluated_on == "test"


@pytest.fixture(scope="module")
def snli() -> list[dict[str, str]]:
    return read_jsonl(SNLI_TRIPLETS)


def test_real_snli_rows_are_held_out_by_premise(snli):
    """SNLI repeats a premise over several rows: a premise is held out with all its rows."""
    assert max(Counter(r["anchor"] for r in snli).values()) > 1  # the data this is about
    data = Dataset.from_list(snli)
    train, held, info = split_holdout(data, seed=42)
    assert held is not None and info is not None
    assert info.rows == len(held) == holdout_rows(len(snli)) == 163
    assert len(train) + len(held) == len(snli)
    held_premises = set(held["anchor"])
    assert held_premises.isdisjoint(train["anchor"])
    # Every row of a held-out premise is held out, and the repeated premises take part.
    rows_per_premise = Counter(r["anchor"] for r in snli)
    assert sum(rows_per_premise[p] for p in held_premises) == len(held)
    assert any(rows_per_premise[p] > 1 for p in held_premises)
    assert row_set(held) | row_set(train) == row_set(data)
    # Seeded: the same seed gives the same rows, another seed others.
    assert split_holdout(data, seed=42)[1]["anchor"] == held["anchor"]  # type: ignore[index]
    assert split_holdout(data, seed=43)[1]["anchor"] != held["anchor"]  # type: ignore[index]


def test_anchors_are_grouped_ignoring_case_and_surrounding_spaces():
    rows = [f"anchor {i}" for i in range(40)]
    rows += ["  Anchor 3 ", "ANCHOR 3", "anchor 7\t"]
    held = held_out_indices(rows, seed=1)
    assert 1 <= len(held) <= holdout_rows(len(rows))
    keys = {anchor_key(rows[i]) for i in held}
    assert [i for i, a in enumerate(rows) if anchor_key(a) in keys] == held
    assert anchor_key(" Anchor 3") == anchor_key("anchor 3") != anchor_key("anchor 30")


def test_the_target_is_met_exactly_when_groups_allow_it():
    # 300 rows: anchors of 1 to 4 rows; target round(300 * 5%) = 15.
    anchors = [f"a{i}" for i in range(120) for _ in range(1 + i % 4)][:300]
    held = held_out_indices(anchors, seed=5)
    assert len(held) == holdout_rows(300) == 15


def test_anchors_larger_than_the_target():
    # 24 rows, target 1, every anchor has 3 rows: one anchor (3 rows, 12.5%) is still held out.
    anchors = [f"a{i}" for i in range(8) for _ in range(3)]
    held = held_out_indices(anchors, seed=3)
    assert len(held) == 3 and len({anchors[i] for i in held}) == 1
    assert held_out_indices(anchors, seed=3) == held
    # One anchor over a fifth of the rows: nothing held out, the run has no eval set.
    halves = ["x"] * 20 + ["y"] * 20
    assert len(halves) * HOLDOUT_MAX_SHARE < 20
    assert held_out_indices(halves, seed=3) == []
    train, holdout, info = split_holdout(Dataset.from_dict({"anchor": halves, "p": halves}), 3)
    assert holdout is None and info is None and len(train) == 40


def test_the_rule_does_not_depend_on_row_order(snli):
    anchors = [r["anchor"] for r in snli]
    chosen = held_out_anchors(anchor_sizes(anchors), seed=9)
    assert held_out_anchors(anchor_sizes(reversed(anchors)), seed=9) == chosen


def test_the_rule_imports_nothing_heavy():
    code = (
        "import sys, rules.holdout; "
        "print(sorted({'numpy', 'torch', 'datasets', 'transformers'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_job_preflight_counts_exactly_what_the_worker_holds_out(tmp_path, snli, fmt):
    """The API's preflight (stored file, no datasets) and the worker's split_holdout (the same
    file loaded with `datasets`) hold out the same rows, so steps and train_rows match the run."""
    rows = snli[:1500]
    # Variants of one premise that only differ in case and spaces: one anchor for both sides.
    rows[10] = {**rows[10], "anchor": "  " + rows[11]["anchor"].upper() + " "}
    path = tmp_path / f"train.{fmt}"
    if fmt == "jsonl":
        write_jsonl(path, rows)
    else:
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(TRIPLET))
            writer.writeheader()
            writer.writerows(rows)
    hp = {"epochs": 3, "batch_size": 32, "max_steps": None, "seed": 1234}
    report = job_preflight(
        train=StoredData(path, fmt, TRIPLET, len(rows)),  # type: ignore[arg-type]
        eval=None,
        test=None,
        has_eval=False,
        hyperparameters=hp,
    )
    full = load_train_data(LocalData(path, fmt, TRIPLET), tmp_path / "work")  # type: ignore[arg-type]
    kept, held, info = split_holdout(full, seed=1234)
    assert held is not None and info is not None
    assert report["holdout_rows"] == info.rows == len(held)
    assert report["train_rows"] == len(kept) == len(rows) - len(held)
    assert report["steps"] == -(-len(kept) // 32) * 3


def test_the_job_holdout_description_states_the_rule():
    from app.jobs.schemas import Holdout as HoldoutSchema

    share = HoldoutSchema.model_fields["share"].description or ""
    assert "anchor" in share
    assert json.dumps(HoldoutSchema.model_json_schema())
