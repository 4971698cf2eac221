"""Without eval data, a small seeded share of the training rows is held out as the eval set."""

from __future__ import annotations

import pytest
from datasets import Dataset
from sentence_transformers import SentenceTransformer

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
from worker.training.spec import Holdout, Hyperparameters, MetricPoint


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
        hyperparameters=Hyperparameters(batch_size=8, learning_rate=1e-3, max_steps=3, seed=11),
    )
    result = run(spec, lambda p: None, points.append)

    assert result.holdout == Holdout(rows=5, share=0.05, seed=11)  # round(96 * 5%)
    assert (result.train_rows, result.eval_rows, result.test_rows) == (91, 5, None)
    assert result.evaluated_on == "holdout" and result.metrics is not None

    # The trainer got the other 91 rows to train on and the 5 held-out rows to evaluate on
    # (sentence-transformers' own card section counts what it was given).
    card = (result.model_dir / "README.md").read_text()
    assert "Size: 91 training samples" in card
    assert "Size: 5 evaluation samples" in card

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
