"""STS data: Spearman and Pearson correlation of cosine similarity, for base and fine-tuned."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sentence_transformers import SentenceTransformer

from tests.support.tiny_model import SHARED_DATA, read_jsonl, write_jsonl
from tests.training.conftest import local
from worker.training.data import load_sts_data
from worker.training.errors import DatasetInvalid
from worker.training.pipeline import METRICS_FILE, run
from worker.training.spec import (
    METRIC_KEYS,
    STS_COLUMNS,
    STS_METRIC_KEYS,
    Hyperparameters,
    LocalData,
)

STSB_DEV = SHARED_DATA / "stsb_dev.jsonl"


@pytest.fixture(scope="module")
def sts_rows() -> list[dict]:
    return read_jsonl(STSB_DEV, limit=200)


@pytest.fixture(scope="module")
def sts_run(tmp_path_factory, make_spec, data_files, sts_rows):
    tmp = tmp_path_factory.mktemp("sts-run")
    sts = LocalData(write_jsonl(tmp / "sts.jsonl", sts_rows), "jsonl", STS_COLUMNS)
    spec = make_spec(
        tmp,
        local(data_files["train_triplets"]),
        test=local(data_files["test"]),
        sts=sts,
        hyperparameters=Hyperparameters(batch_size=8, learning_rate=1e-3, max_steps=4),
    )
    return spec, run(spec, lambda p: None)


def correlations(model_dir: Path, rows: list[dict]) -> tuple[float, float]:
    """Spearman and Pearson of cosine similarity with the scores, computed independently."""
    model = SentenceTransformer(str(model_dir), device="cpu")
    a = np.asarray(model.encode([r["sentence1"] for r in rows]))
    b = np.asarray(model.encode([r["sentence2"] for r in rows]))
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    scores = [r["score"] for r in rows]
    return float(spearmanr(cosine, scores)[0]), float(pearsonr(cosine, scores)[0])


def test_sts_correlations_are_added_for_base_and_fine_tuned(sts_run, sts_rows, tiny_models):
    spec, result = sts_run
    assert result.metrics is not None and result.sts_rows == 200
    for which in ("base", "fine_tuned"):
        values = result.metrics[which]
        assert tuple(values) == (*METRIC_KEYS, *STS_METRIC_KEYS)
        for key in STS_METRIC_KEYS:
            assert isinstance(values[key], float) and -1 <= values[key] <= 1, (which, key)
    # Both are the correlations of exactly those models on exactly the STS rows.
    spearman, pearson = correlations(tiny_models / "tiny", sts_rows)
    assert result.metrics["base"]["sts_spearman_cosine"] == pytest.approx(spearman, abs=1e-4)
    assert result.metrics["base"]["sts_pearson_cosine"] == pytest.approx(pearson, abs=1e-4)
    spearman, pearson = correlations(result.model_dir, sts_rows)
    assert result.metrics["fine_tuned"]["sts_spearman_cosine"] == pytest.approx(spearman, abs=1e-4)
    assert result.metrics["fine_tuned"]["sts_pearson_cosine"] == pytest.approx(pearson, abs=1e-4)
    assert (
        result.metrics["fine_tuned"]["sts_spearman_cosine"]
        != result.metrics["base"]["sts_spearman_cosine"]
    )


def test_sts_metrics_are_written_to_metrics_json(sts_run):
    import json

    _, result = sts_run
    written = json.loads((result.model_dir / METRICS_FILE).read_text())
    assert written["fine_tuned"] == result.metrics["fine_tuned"]
    assert set(written["base"]) >= set(STS_METRIC_KEYS)


def test_without_sts_data_there_are_no_sts_keys(tiny_run):
    assert tiny_run.result.sts_rows is None
    assert set(tiny_run.result.metrics["base"]) == set(METRIC_KEYS)


def test_sts_csv_scores_load_as_floats(tmp_path, sts_rows):
    path = tmp_path / "sts.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sentence1", "sentence2", "score", "genre"])
        for row in sts_rows[:30]:
            writer.writerow([row["sentence1"], row["sentence2"], row["score"], "news"])
    data = load_sts_data(LocalData(path, "csv", STS_COLUMNS), tmp_path / "work")
    assert data.column_names == list(STS_COLUMNS)
    assert data.features["score"].dtype == "float64"
    assert data["score"] == pytest.approx([float(r["score"]) for r in sts_rows[:30]])


def test_integer_scores_become_floats(tmp_path):
    rows = [{"sentence1": f"a {i}", "sentence2": f"b {i}", "score": i % 2} for i in range(6)]
    data = load_sts_data(
        LocalData(write_jsonl(tmp_path / "s.jsonl", rows), "jsonl", STS_COLUMNS), tmp_path
    )
    assert data.features["score"].dtype == "float64"
    assert data["score"] == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"sentence1": "a", "sentence2": "b", "score": 0.5}] * 3, "different scores"),
        (
            [{"sentence1": "a", "sentence2": "b", "score": "high"}] * 3,
            "does not hold numbers",
        ),
        (
            [
                {"sentence1": "a", "sentence2": "b", "score": 0.5},
                {"sentence1": "a", "sentence2": "b", "score": None},
            ],
            "empty value",
        ),
    ],
    ids=["constant", "text-scores", "missing-score"],
)
def test_unusable_sts_data_is_invalid(tmp_path, make_spec, data_files, rows, message):
    sts = LocalData(write_jsonl(tmp_path / "sts.jsonl", rows), "jsonl", STS_COLUMNS)
    spec = make_spec(tmp_path, local(data_files["train_triplets"]), sts=sts)
    with pytest.raises(DatasetInvalid, match=message) as info:
        run(spec, lambda p: None)
    assert "STS" in info.value.message
    assert not spec.output_dir.exists()


def test_hub_sts_columns_are_picked_by_name_or_type():
    from datasets import Dataset

    from worker.training.data import pick_sts_columns

    named = Dataset.from_dict(
        {"idx": [1], "score": [0.5], "sentence2": ["b"], "sentence1": ["a"], "genre": ["x"]}
    )
    assert pick_sts_columns(named) == list(STS_COLUMNS)
    typed = Dataset.from_dict({"id": ["7"], "text_a": ["a"], "label": [4.2], "text_b": ["b"]})
    # The first two text columns ("id" is text too) and the first numeric column.
    assert pick_sts_columns(typed) == ["id", "text_a", "label"]
    assert pick_sts_columns(Dataset.from_dict({"a": ["x"], "b": ["y"]})) is None
    assert pick_sts_columns(Dataset.from_dict({"a": ["x"], "s": [0.1]})) is None
