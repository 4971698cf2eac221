"""The Hub commit a job's Hub dataset resolved to, and how much of the repository is fetched.

Hub datasets are laid out in a real Hugging Face hub cache (tests.training.hub_cache); offline,
the Hub client resolves them from it and `datasets` loads the snapshot folder. The commit is the
snapshot's folder name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.hub_cache import OTHER_SHA, SHA, cache_hub_dataset, use_hub_cache
from worker.training.data import (
    hub_data_patterns,
    load_sts_data,
    load_train_data,
    load_triplet_data,
    snapshot_commit,
)
from worker.training.errors import DatasetInvalid, DatasetUnavailable
from worker.training.pipeline import run
from worker.training.spec import HubData, Hyperparameters


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return use_hub_cache(tmp_path / "hf-hub", monkeypatch)


@pytest.fixture
def fetches(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Every snapshot_download call the worker makes (the real one still runs)."""
    import huggingface_hub

    real = huggingface_hub.snapshot_download
    calls: list[dict] = []

    def recording(repo_id: str, **kwargs: object) -> str:
        calls.append({"repo_id": repo_id, **kwargs})
        return real(repo_id, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(huggingface_hub, "snapshot_download", recording)
    return calls


def test_offline_load_records_the_snapshot_commit(tmp_path, hub_cache, snli_rows):
    cache_hub_dataset(
        hub_cache, "org/nli", {"triplet": {"train": snli_rows[:10]}}, refs=("main", "v1")
    )
    revisions: dict[str, str] = {}
    source = HubData(hub="org/nli", config="triplet", split="train", limit=4, revision="v1")
    data = load_train_data(source, tmp_path, revisions=revisions)
    assert len(data) == 4 and data.column_names == ["anchor", "positive", "negative"]
    assert data[0]["anchor"] == snli_rows[0]["anchor"]
    assert revisions == {"train": SHA}

    load_triplet_data(source, tmp_path, "test", revisions=revisions)
    assert revisions == {"train": SHA, "test": SHA}
    load_train_data(source, tmp_path)  # revisions is optional


def test_each_branch_loads_its_own_commit(tmp_path, hub_cache, snli_rows):
    cache_hub_dataset(hub_cache, "org/nli", {"triplet": {"train": snli_rows[:10]}})
    cache_hub_dataset(
        hub_cache,
        "org/nli",
        {"triplet": {"train": snli_rows[10:30]}},
        sha=OTHER_SHA,
        refs=("v2",),
    )
    revisions: dict[str, str] = {}
    newer = load_train_data(
        HubData(hub="org/nli", config="triplet", revision="v2"), tmp_path, revisions=revisions
    )
    assert len(newer) == 20 and revisions == {"train": OTHER_SHA}
    older = load_train_data(HubData(hub="org/nli", config="triplet"), tmp_path)
    assert len(older) == 10


def test_a_sha_pin_missing_from_the_cache_is_unavailable(tmp_path, hub_cache, snli_rows):
    """Offline, only the pinned commit's snapshot will do."""
    cache_hub_dataset(hub_cache, "org/nli", {"triplet": {"train": snli_rows[:10]}})
    with pytest.raises(DatasetUnavailable) as info:
        load_train_data(HubData(hub="org/nli", config="triplet", revision=OTHER_SHA), tmp_path)
    assert "not found or is not accessible" in info.value.message
    assert OTHER_SHA in info.value.message  # the client's own pin, named back
    assert str(hub_cache) not in info.value.message
    revisions: dict[str, str] = {}
    load_train_data(
        HubData(hub="org/nli", config="triplet", revision=SHA), tmp_path, revisions=revisions
    )
    assert revisions == {"train": SHA}


def test_sts_data_records_under_sts(tmp_path, hub_cache):
    rows = [{"sentence1": f"a {i}", "sentence2": f"b {i}", "score": i / 4} for i in range(5)]
    cache_hub_dataset(hub_cache, "org/sts", {"default": {"train": rows}}, fmt="jsonl")
    revisions: dict[str, str] = {}
    data = load_sts_data(HubData(hub="org/sts"), tmp_path, revisions=revisions)
    assert data.column_names == ["sentence1", "sentence2", "score"]
    assert revisions == {"sts": SHA}


def test_snapshot_commit_is_the_folder_name(tmp_path):
    assert snapshot_commit(tmp_path / "snapshots" / SHA) == SHA
    assert snapshot_commit(tmp_path / "snapshots" / "main") is None
    assert snapshot_commit(tmp_path / SHA.upper()) is None


def test_only_the_card_and_the_configs_files_are_fetched(tmp_path, hub_cache, fetches, snli_rows):
    """The card first; then its files of the config asked for and of the first config (which
    `datasets` reads whatever config is asked for), pinned to the commit the first fetch found.
    A third config's files are neither fetched nor needed: absent from the cache, it loads."""
    snapshot = cache_hub_dataset(
        hub_cache,
        "org/multi",
        {
            "pair": {"train": [{"anchor": "a", "positive": "p"}]},
            "triplet": {"train": snli_rows[:6], "test": snli_rows[6:9]},
            "other": {"train": [{"anchor": "x", "positive": "y"}]},
        },
    )
    for file in (snapshot / "other").iterdir():
        file.unlink()
    data = load_train_data(HubData(hub="org/multi", config="triplet"), tmp_path)
    assert len(data) == 6
    assert fetches == [
        {
            "repo_id": "org/multi",
            "repo_type": "dataset",
            "revision": None,
            "allow_patterns": ["README.md"],
        },
        {
            "repo_id": "org/multi",
            "repo_type": "dataset",
            "revision": SHA,
            "allow_patterns": [
                "README.md",
                "pair/train-*.parquet",
                "triplet/train-*.parquet",
                "triplet/test-*.parquet",
            ],
        },
    ]


def test_a_card_without_configs_fetches_the_whole_snapshot(tmp_path, hub_cache, fetches):
    rows = [{"anchor": f"a{i}", "positive": f"p{i}"} for i in range(3)]
    cache_hub_dataset(hub_cache, "org/plain", {"x": {"train": rows}}, with_configs=False)
    assert len(load_train_data(HubData(hub="org/plain"), tmp_path)) == 3
    assert fetches[-1]["allow_patterns"] is None


def card(tmp_path: Path, yaml: str) -> Path:
    path = tmp_path / "README.md"
    path.write_text(f"---\n{yaml}\n---\n# card\n")
    return path


def test_data_patterns_follow_the_card(tmp_path):
    source = HubData(hub="org/d")
    assert hub_data_patterns(tmp_path / "missing.md", source, "train") is None
    assert hub_data_patterns(card(tmp_path, "license: mit"), source, "train") is None
    one = card(tmp_path, "configs:\n- config_name: a\n  data_files: a/*.parquet")
    assert hub_data_patterns(one, source, "train") == ["a/*.parquet"]
    by_dir = card(tmp_path, "configs:\n- config_name: a\n  data_dir: sub")
    assert hub_data_patterns(by_dir, source, "train") == ["sub", "sub/*"]
    default = card(
        tmp_path,
        "configs:\n- config_name: a\n  data_files: a.csv\n"
        "- config_name: b\n  default: true\n  data_files: [b1.csv, b2.csv]",
    )
    assert hub_data_patterns(default, source, "train") == ["a.csv", "b1.csv", "b2.csv"]
    no_files = card(tmp_path, "configs:\n- config_name: a\n- config_name: b\n  data_files: b.csv")
    assert hub_data_patterns(no_files, HubData(hub="org/d", config="b"), "train") is None


def test_configs_the_card_does_not_have_are_invalid(tmp_path):
    two = card(
        tmp_path,
        "configs:\n- config_name: a\n  data_files: a.csv\n- config_name: b\n  data_files: b.csv",
    )
    with pytest.raises(DatasetInvalid, match="several configurations; name one of 'a', 'b'"):
        hub_data_patterns(two, HubData(hub="org/d"), "train")
    with pytest.raises(DatasetInvalid, match="no configuration 'c'; name one of 'a', 'b'"):
        hub_data_patterns(two, HubData(hub="org/d", config="c"), "train")


@pytest.mark.parametrize(
    "files",
    [
        "/srv/embedtune-data/datasets/*.jsonl",
        "../../datasets--org--private/snapshots/*/x.parquet",
        "a/../../../../etc/passwd",
        "~/data.csv",
        "file:///etc/passwd",
        "hf://datasets/org/other/x.parquet",
        "C:\\\\data.csv",
    ],
)
def test_a_card_naming_files_outside_the_repository_is_refused(tmp_path, files):
    """A card is written by whoever owns the Hub repo: its patterns must not reach the worker's
    disk either, in any configuration."""
    bad = card(
        tmp_path,
        f"configs:\n- config_name: a\n  data_files: a.csv\n"
        f"- config_name: b\n  data_files:\n  - split: train\n    path: '{files}'",
    )
    with pytest.raises(DatasetInvalid, match="outside the dataset repository") as info:
        hub_data_patterns(bad, HubData(hub="org/d", config="a"), "train")
    assert files not in info.value.message


def test_training_result_has_the_hub_revisions(tmp_path, hub_cache, make_spec, snli_rows):
    cache_hub_dataset(hub_cache, "org/nli", {"triplet": {"train": snli_rows[:40]}})
    cache_hub_dataset(
        hub_cache, "org/nli-test", {"triplet": {"test": snli_rows[300:330]}}, sha=OTHER_SHA
    )
    spec = make_spec(
        tmp_path,
        HubData(hub="org/nli", config="triplet", revision="main"),
        test=HubData(hub="org/nli-test", config="triplet", split="test"),
        hyperparameters=Hyperparameters(batch_size=8, learning_rate=1e-3, max_steps=1),
    )
    result = run(spec, lambda p: None)
    assert result.hub_revisions == {"train": SHA, "test": OTHER_SHA}
    assert result.metrics is not None
