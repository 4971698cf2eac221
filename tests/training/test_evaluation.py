"""The triplet evaluator's real output (sentence-transformers' key names) becomes METRIC_KEYS."""

from __future__ import annotations

import pytest
from datasets import Dataset
from sentence_transformers import SentenceTransformer

from worker.training.evaluation import build_triplet_evaluator, evaluate, metrics_from_output
from worker.training.spec import METRIC_KEYS


@pytest.fixture(scope="module")
def triplets(snli_rows) -> Dataset:
    return Dataset.from_list(snli_rows[:40]).select_columns(["anchor", "positive", "negative"])


def test_evaluator_reports_the_expected_raw_keys(tiny_models, triplets):
    model = SentenceTransformer(str(tiny_models / "tiny"), device="cpu")
    raw = build_triplet_evaluator(triplets, "dev")(model)
    assert set(raw) == {
        "dev_cosine_accuracy",
        "dev_dot_accuracy",
        "dev_euclidean_accuracy",
        "dev_manhattan_accuracy",
        "dev_max_accuracy",
    }
    metrics = evaluate(model, build_triplet_evaluator(triplets, "dev"))
    assert tuple(metrics) == METRIC_KEYS
    assert metrics == {key[len("dev_") :]: value for key, value in raw.items()}


def test_accuracy_counts_triplets_ranked_correctly(tiny_models):
    """A triplet whose negative *is* the anchor can never be ranked right (0 accuracy); one whose
    positive is the anchor always is (1 for cosine)."""
    model = SentenceTransformer(str(tiny_models / "tiny"), device="cpu")
    wrong = Dataset.from_dict(
        {
            "a": ["A dog runs.", "A cat sleeps."],
            "p": ["Birds fly.", "Fish swim."],
            "n": ["A dog runs.", "A cat sleeps."],
        }
    )
    right = wrong.rename_columns({"p": "n", "n": "p"}).select_columns(["a", "p", "n"])
    assert evaluate(model, build_triplet_evaluator(wrong, "x"))["cosine_accuracy"] == 0.0
    assert evaluate(model, build_triplet_evaluator(right, "x"))["cosine_accuracy"] == 1.0


def test_max_is_taken_from_the_evaluator_or_computed():
    reported = {
        "t_cosine_accuracy": 0.5,
        "t_dot_accuracy": 0.75,
        "t_euclidean_accuracy": 0.25,
        "t_manhattan_accuracy": 0.5,
        "t_max_accuracy": 0.75,
    }
    assert metrics_from_output(reported, "t")["max_accuracy"] == 0.75
    without_max = {k: v for k, v in reported.items() if k != "t_max_accuracy"}
    assert metrics_from_output(without_max, "t") == {
        "cosine_accuracy": 0.5,
        "dot_accuracy": 0.75,
        "euclidean_accuracy": 0.25,
        "manhattan_accuracy": 0.5,
        "max_accuracy": 0.75,
    }
    with pytest.raises(KeyError):
        metrics_from_output({"t_cosine_accuracy": 1.0}, "t")
