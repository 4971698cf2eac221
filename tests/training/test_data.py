"""Loading data sources into text-only datasets in loss order."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import Dataset

from tests.support.tiny_model import write_jsonl
from tests.training.hub_cache import cache_hub_dataset, use_hub_cache
from worker.training.data import load_train_data, load_triplet_data, pick_hub_columns
from worker.training.errors import DatasetInvalid, DatasetUnavailable
from worker.training.spec import HubData, LocalData


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return use_hub_cache(tmp_path / "hf-hub", monkeypatch)


def with_extras(rows: list[dict]) -> list[dict]:
    return [{"id": i, "label": "entailment", **row} for i, row in enumerate(rows)]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_local_formats_keep_only_the_text_columns_in_loss_order(tmp_path, snli_rows, fmt):
    rows = with_extras(snli_rows[:12])
    path = tmp_path / f"data.{fmt}"
    if fmt == "jsonl":
        write_jsonl(path, rows)
    elif fmt == "csv":
        Dataset.from_list(rows).to_csv(str(path), index=False)
    else:
        Dataset.from_list(rows).to_parquet(str(path))
    columns = ("negative", "anchor", "positive")  # a file's order need not be the loss order
    data = load_triplet_data(LocalData(path, fmt, columns), tmp_path / "work", "test")
    assert data.column_names == list(columns)
    assert len(data) == 12
    assert data[0] == {c: snli_rows[0][c] for c in columns}
    assert (tmp_path / "work" / "hf-datasets").is_dir()


def test_local_pairs_are_fine_for_training(tmp_path, snli_rows):
    path = write_jsonl(tmp_path / "d.jsonl", snli_rows[:5])
    data = load_train_data(LocalData(path, "jsonl", ("anchor", "positive")), tmp_path)
    assert data.column_names == ["anchor", "positive"]


def test_pairs_as_eval_data_are_invalid(tmp_path, snli_rows):
    path = write_jsonl(tmp_path / "d.jsonl", snli_rows[:5])
    with pytest.raises(DatasetInvalid, match="triplets"):
        load_triplet_data(LocalData(path, "jsonl", ("anchor", "positive")), tmp_path, "eval")


@pytest.mark.parametrize(("fmt", "content"), [("csv", "anchor,positive\n"), ("jsonl", "")])
def test_zero_rows_are_invalid(tmp_path, fmt, content):
    path = tmp_path / f"empty.{fmt}"
    path.write_text(content)
    with pytest.raises(DatasetInvalid, match="no rows"):
        load_train_data(LocalData(path, fmt, ("anchor", "positive")), tmp_path)


def test_zero_rows_after_loading_are_invalid(tmp_path):
    path = tmp_path / "empty.parquet"
    Dataset.from_dict({"anchor": [], "positive": []}).to_parquet(str(path))
    with pytest.raises(DatasetInvalid, match="no rows"):
        load_train_data(LocalData(path, "parquet", ("anchor", "positive")), tmp_path)


def test_missing_values_are_invalid(tmp_path, snli_rows):
    rows = [dict(r) for r in snli_rows[:4]]
    rows[2]["positive"] = None
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DatasetInvalid, match="positive"):
        load_train_data(LocalData(path, "jsonl", ("anchor", "positive")), tmp_path)


def test_non_text_column_is_invalid(tmp_path, snli_rows):
    path = write_jsonl(tmp_path / "d.jsonl", with_extras(snli_rows[:4]))
    with pytest.raises(DatasetInvalid, match="'id'"):
        load_train_data(LocalData(path, "jsonl", ("anchor", "id")), tmp_path)


def test_missing_local_file_is_unavailable_without_its_path(tmp_path):
    missing = tmp_path / "gone.jsonl"
    with pytest.raises(DatasetUnavailable) as info:
        load_train_data(LocalData(missing, "jsonl", ("anchor", "positive")), tmp_path)
    assert str(tmp_path) not in info.value.message


def test_unreadable_local_file_is_invalid(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(DatasetInvalid) as info:
        load_train_data(LocalData(path, "parquet", ("anchor", "positive")), tmp_path)
    assert str(tmp_path) not in info.value.message


def test_unknown_hub_dataset_is_unavailable(tmp_path, hub_cache):
    source = HubData(
        hub="embedtune-tests/no-such-dataset",
        config="triplet",
        split="dev",
        limit=50,
        revision="abc",
    )
    with pytest.raises(DatasetUnavailable) as info:
        load_train_data(source, tmp_path)
    message = info.value.message
    assert info.value.code == "dataset_unavailable"
    assert "not found or is not accessible" in message
    for part in ("embedtune-tests/no-such-dataset", "'triplet'", "'dev[:50]'", "'abc'"):
        assert part in message
    assert str(tmp_path) not in message


def test_hub_columns_prefer_anchor_positive_negative():
    data = Dataset.from_dict(
        {"negative": ["n"], "id": [1], "positive": ["p"], "title": ["t"], "anchor": ["a"]}
    )
    assert pick_hub_columns(data) == ["anchor", "positive", "negative"]
    pairs = Dataset.from_dict({"positive": ["p"], "anchor": ["a"], "query": ["q"]})
    assert pick_hub_columns(pairs) == ["anchor", "positive"]


def test_hub_columns_fall_back_to_the_first_string_columns():
    data = Dataset.from_dict(
        {"idx": [1], "premise": ["a"], "score": [0.5], "hypothesis": ["b"], "c": ["c"], "d": ["d"]}
    )
    assert pick_hub_columns(data) == ["premise", "hypothesis", "c"]
    assert pick_hub_columns(Dataset.from_dict({"idx": [1], "text": ["a"]})) == ["text"]


def test_hub_data_is_loaded_as_asked_and_its_columns_picked(tmp_path, hub_cache, monkeypatch):
    """`datasets` gets the snapshot folder the Hub client resolved, never the client's id."""
    import datasets

    rows = [{"idx": i, "premise": f"a{i}", "hypothesis": f"c{i}", "label": i % 2} for i in range(5)]
    snapshot = cache_hub_dataset(
        hub_cache,
        "org/nli",
        {"default": {"train": rows}, "pair": {"train": rows}},
        refs=("main", "v1"),
    )
    real = datasets.load_dataset
    calls = []

    def recording(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", recording)
    data = load_train_data(HubData(hub="org/nli", split="train", limit=2), tmp_path)
    assert data.column_names == ["premise", "hypothesis"]
    assert data["premise"] == ["a0", "a1"]
    cache = str(tmp_path / "hf-datasets")
    assert calls == [((str(snapshot), None), {"split": "train[:2]", "cache_dir": cache})]

    with pytest.raises(DatasetInvalid, match="triplets"):
        load_triplet_data(HubData(hub="org/nli", config="pair", revision="v1"), tmp_path, "test")
    assert calls[-1] == ((str(snapshot), "pair"), {"split": "train", "cache_dir": cache})


def test_hub_data_without_two_text_columns_is_invalid(tmp_path, hub_cache):
    rows = [{"text": "a", "label": 1}]
    cache_hub_dataset(hub_cache, "org/one-column", {"default": {"train": rows}})
    with pytest.raises(DatasetInvalid, match="fewer than 2 text columns"):
        load_train_data(HubData(hub="org/one-column"), tmp_path)


def test_csv_texts_that_look_like_missing_values_or_numbers_stay_text(tmp_path):
    """The upload validator accepts "NA", "null" and "42" as texts; training must too."""
    path = tmp_path / "odd.csv"
    path.write_text("anchor,positive,negative\nNA,null,42\nN/A,nan,3.5\n")
    source = LocalData(path=path, format="csv", columns=("anchor", "positive", "negative"))
    dataset = load_train_data(source, tmp_path)
    assert dataset.to_list() == [
        {"anchor": "NA", "positive": "null", "negative": "42"},
        {"anchor": "N/A", "positive": "nan", "negative": "3.5"},
    ]


def test_hub_column_mapping_picks_those_columns_in_loss_order(tmp_path, hub_cache):
    row = {"id": "1", "hard": "n", "answer": "p", "query": "q", "anchor": "x"}
    cache_hub_dataset(hub_cache, "org/qa", {"default": {"train": [row]}}, fmt="jsonl")
    source = HubData(hub="org/qa", columns=("query", "answer", "hard"))
    data = load_train_data(source, tmp_path)
    assert data.column_names == ["query", "answer", "hard"]
    assert data.to_list() == [{"query": "q", "answer": "p", "hard": "n"}]

    with pytest.raises(DatasetInvalid, match="no column\\(s\\) passage"):
        load_train_data(HubData(hub="org/qa", columns=("query", "passage")), tmp_path)
