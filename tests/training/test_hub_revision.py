"""The Hub commit a job's Hub dataset resolved to, found offline in real cache layouts.

A `datasets` (5.x) cache is built here the way `datasets` lays one out for a Hub dataset
(`<org>___<name>/<config>/<version>/<commit sha>/` with `dataset_info.json` and the split's Arrow
file), and `load_dataset` really loads from it offline; the Hugging Face hub cache fallback
(`datasets--org--name/refs/<revision>`) is checked against a fake hub cache folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from datasets import Dataset

from tests.support.tiny_model import write_jsonl
from worker.training.data import (
    load_sts_data,
    load_train_data,
    load_triplet_data,
    resolve_hub_revision,
)
from worker.training.errors import DatasetUnavailable
from worker.training.pipeline import run
from worker.training.spec import HubData, Hyperparameters

SHA = "0123456789abcdef0123456789abcdef01234567"
OTHER_SHA = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture
def datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import datasets.config

    root = tmp_path / "hf-datasets"
    root.mkdir()
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", root)
    return root


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import huggingface_hub.constants

    root = tmp_path / "hf-hub"
    root.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    return root


def cache_hub_dataset(
    cache: Path, repo: str, config: str, sha: str, rows: list[dict], tmp: Path
) -> Path:
    """Lay out `rows` as the `train` split of Hub dataset `repo` (config, commit `sha`) in a
    `datasets` cache, as `load_dataset` leaves it after loading it online."""
    from datasets import load_dataset

    source = write_jsonl(tmp / f"{sha}.jsonl", rows)
    built = load_dataset("json", data_files=str(source), split="train", cache_dir=str(tmp / "b"))
    arrow = Path(built.cache_files[0]["filename"])
    org, name = repo.split("/")
    dest = cache / f"{org}___{name}" / config / "0.0.0" / sha
    dest.mkdir(parents=True)
    shutil.copy(arrow, dest / f"{name}-train.arrow")
    info = json.loads((arrow.parent / "dataset_info.json").read_text())
    info.update(config_name=config, dataset_name=name)
    info["splits"]["train"]["dataset_name"] = name
    (dest / "dataset_info.json").write_text(json.dumps(info))
    return dest


def test_offline_load_records_the_cached_commit(tmp_path, datasets_cache, snli_rows):
    cache_hub_dataset(datasets_cache, "org/nli", "triplet", SHA, snli_rows[:10], tmp_path)
    revisions: dict[str, str] = {}
    source = HubData(hub="org/nli", config="triplet", split="train", limit=4, revision="v1")
    data = load_train_data(source, tmp_path, revisions=revisions)
    assert len(data) == 4 and data.column_names == ["anchor", "positive", "negative"]
    assert revisions == {"train": SHA}

    load_triplet_data(source, tmp_path, "test", revisions=revisions)
    assert revisions == {"train": SHA, "test": SHA}
    load_train_data(source, tmp_path)  # revisions is optional


def test_a_sha_pin_that_the_cache_cannot_honour_is_unavailable(tmp_path, datasets_cache, snli_rows):
    """Offline, `datasets` loads the latest cached commit whatever the pin: refuse it."""
    cache_hub_dataset(datasets_cache, "org/nli", "triplet", SHA, snli_rows[:10], tmp_path)
    with pytest.raises(DatasetUnavailable) as info:
        load_train_data(HubData(hub="org/nli", config="triplet", revision=OTHER_SHA), tmp_path)
    assert OTHER_SHA in info.value.message and SHA in info.value.message
    revisions: dict[str, str] = {}
    load_train_data(
        HubData(hub="org/nli", config="triplet", revision=SHA), tmp_path, revisions=revisions
    )
    assert revisions == {"train": SHA}


def test_sts_data_records_under_sts(tmp_path, datasets_cache):
    rows = [{"sentence1": f"a {i}", "sentence2": f"b {i}", "score": i / 4} for i in range(5)]
    cache_hub_dataset(datasets_cache, "org/sts", "default", SHA, rows, tmp_path)
    revisions: dict[str, str] = {}
    load_sts_data(HubData(hub="org/sts", config="default"), tmp_path, revisions=revisions)
    assert revisions == {"sts": SHA}


def test_hub_cache_refs_are_the_fallback(hub_cache):
    """No cache files to read the commit from (e.g. an in-memory dataset): the hub cache's
    refs/<revision> (refs/main without a pin), or snapshots/<sha> for a sha pin."""
    repo_dir = hub_cache / "datasets--org--nli"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(SHA)
    (repo_dir / "refs" / "v1").write_text(OTHER_SHA + "\n")
    (repo_dir / "snapshots" / OTHER_SHA).mkdir(parents=True)
    in_memory = Dataset.from_dict({"anchor": ["a"], "positive": ["p"]})
    assert in_memory.cache_files == []

    def resolved(**kw: object) -> str | None:
        return resolve_hub_revision(HubData(hub="org/nli", **kw), in_memory)  # type: ignore[arg-type]

    assert resolved() == SHA
    assert resolved(revision="v1") == OTHER_SHA
    assert resolved(revision=OTHER_SHA) == OTHER_SHA
    assert resolved(revision=SHA) is None  # no snapshot of that commit
    assert resolved(revision="no-such-branch") is None
    assert resolve_hub_revision(HubData(hub="org/other"), in_memory) is None


def test_unknown_commit_is_not_recorded(tmp_path, hub_cache, monkeypatch):
    monkeypatch.setattr(
        "datasets.load_dataset",
        lambda *a, **k: Dataset.from_dict({"anchor": ["a"], "positive": ["p"]}),
    )
    revisions: dict[str, str] = {}
    load_train_data(HubData(hub="org/unknown"), tmp_path, revisions=revisions)
    assert revisions == {}


def test_training_result_has_the_hub_revisions(tmp_path, datasets_cache, make_spec, snli_rows):
    cache_hub_dataset(datasets_cache, "org/nli", "triplet", SHA, snli_rows[:40], tmp_path)
    cache_hub_dataset(
        datasets_cache, "org/nli-test", "triplet", OTHER_SHA, snli_rows[300:330], tmp_path
    )
    spec = make_spec(
        tmp_path,
        HubData(hub="org/nli", config="triplet", revision="main"),
        test=HubData(hub="org/nli-test", config="triplet"),
        hyperparameters=Hyperparameters(batch_size=8, learning_rate=1e-3, max_steps=1),
    )
    result = run(spec, lambda p: None)
    assert result.hub_revisions == {"train": SHA, "test": OTHER_SHA}
    assert result.metrics is not None
