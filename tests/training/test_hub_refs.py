"""No string from a client is ever used as a filesystem path (security issue 9).

A Hub dataset reference or base model name that is, or looks like, a path on the worker (relative
to its working directory, absolute, `file://`, `~`, `..`, a symlink named like a repo id) loads
nothing from there: the worker refuses what is no Hub id, and looks up what is one only through
the Hub client and its cache. The error says the same whether the path exists or not, and names
no server path. The API refuses such names at POST /jobs (pydantic level here).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app.jobs.schemas import STORED, HubDatasetRef, JobCreate
from rules import names
from rules.errors import DatasetUnavailable, ModelNotFound
from tests.training.hub_cache import cache_hub_dataset, use_hub_cache
from worker.training.data import load_sts_data, load_train_data
from worker.training.models import load_base_model
from worker.training.spec import HubData

ROWS = [{"anchor": f"secret anchor {i}", "positive": f"secret positive {i}"} for i in range(30)]


class Worker:
    """A worker's working directory (the test's cwd), its home and an absolute folder, all
    empty until `populate` fills them with other teams' data and a model, as a real worker's
    disk holds them."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.cwd = root / "worker"
        self.home = root / "home"
        self.abs = root / "abs"
        for folder in (self.cwd, self.home, self.abs):
            folder.mkdir(parents=True)
        monkeypatch.chdir(self.cwd)
        monkeypatch.setenv("HOME", str(self.home))
        self.models = root / "model-dirs"  # the configured model directory: empty
        self.models.mkdir()
        self.hub = use_hub_cache(root / "hf-hub", monkeypatch)

    def name(self, template: str) -> str:
        return template.format(abs=self.abs, cwd=self.cwd)

    def populate(self, model: Path) -> None:
        for folder in (
            self.cwd / "uploads" / "data",
            self.cwd / "embedtune-data" / "datasets",
            self.cwd / "org" / "real",
            self.home / "data",
            self.abs / "data",
            self.root / "x",
            self.root / "data",
        ):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
            (folder / "README.md").write_text("# leaked\n")
            for target in ("tiny", "model"):
                if not (folder / target).exists():
                    _copy_model(model, folder / target)
        # Symlinks named like repo ids, to data and to a model outside anything configured.
        (self.cwd / "org" / "name").symlink_to(self.abs / "data", target_is_directory=True)
        (self.cwd / "team").symlink_to(self.abs, target_is_directory=True)
        _copy_model(model, self.cwd / "org" / "model")


def _copy_model(model: Path, dest: Path) -> None:
    import shutil

    shutil.copytree(model, dest)


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Worker:
    return Worker(tmp_path, monkeypatch)


# Valid Hub ids that exist as folders (or symlinks) relative to the worker's cwd once populated.
EXISTING_IDS = [
    "uploads/data",
    "embedtune-data/datasets",
    "org/name",  # a symlink to a folder of data
    "team",  # a symlink to the absolute folder
    "team/data",  # a folder of data through that symlink
    "org/real",
    "uploads",
]
# Not Hub ids at all: refused without being echoed.
PATH_NAMES = [
    "{abs}/data",
    "{abs}",
    "{cwd}/uploads/data",
    "/tmp",
    "/etc/passwd",
    "file://{abs}/data",
    "file:///etc/passwd",
    "~/data",
    "~",
    "../x",
    "../data",
    "./uploads/data",
    "uploads/data/",
    "uploads/data\n",
    "org/name\n",
    "team/data/train.jsonl",
    "embedtune-data/datasets/train.jsonl",
    "a/../uploads/data",
    "uploads\\data",
    "",
    " uploads/data",
]


def dataset_error(source: HubData, tmp: Path) -> str:
    with pytest.raises(DatasetUnavailable) as info:
        load_train_data(source, tmp / "work")
    return info.value.message


def model_error(name: str, worker: Worker) -> str:
    with pytest.raises(ModelNotFound) as info:
        load_base_model(name, (worker.models,), "cpu")
    return info.value.message


def assert_no_server_path(message: str, worker: Worker) -> None:
    for path in (worker.root, worker.cwd, worker.home, worker.abs, worker.hub):
        assert str(path) not in message
    assert "leaked" not in message and "secret" not in message


@pytest.mark.parametrize("hub", EXISTING_IDS)
def test_a_hub_dataset_id_that_exists_on_the_worker_is_just_an_id(
    worker, tiny_models, tmp_path, hub
):
    source = HubData(hub=hub)
    before = dataset_error(source, tmp_path)
    worker.populate(tiny_models / "tiny")
    after = dataset_error(source, tmp_path)
    assert after == before
    assert "not found or is not accessible" in after
    assert_no_server_path(after, worker)


@pytest.mark.parametrize("template", PATH_NAMES)
def test_a_hub_dataset_named_by_a_path_is_refused_alike(worker, tiny_models, tmp_path, template):
    source = HubData(hub=worker.name(template))
    before = dataset_error(source, tmp_path)
    worker.populate(tiny_models / "tiny")
    after = dataset_error(source, tmp_path)
    assert after == before
    assert "not found or is not accessible" in after
    assert_no_server_path(after, worker)
    if source.hub.strip():  # not echoed (the rule's own text aside)
        assert source.hub.strip() not in after.replace(names.HUB_ID_RULE, "")


@pytest.mark.parametrize(
    "fields",
    [
        {"config": "../../uploads/data"},
        {"config": "/etc"},
        {"config": "triplet\n"},
        {"split": "train/../../x"},
        {"split": "train[:10]"},
        {"revision": "../../../uploads"},
        {"revision": "/abs"},
        {"revision": "-rf"},
        {"revision": "main\n"},
        {"revision": "refs/../../x"},
    ],
)
def test_config_split_and_revision_that_could_be_paths_are_refused(
    worker, tiny_models, tmp_path, fields
):
    source = HubData(hub="org/nli", **fields)
    before = dataset_error(source, tmp_path)
    worker.populate(tiny_models / "tiny")
    assert dataset_error(source, tmp_path) == before
    assert "not found or is not accessible" in before
    value = next(iter(fields.values()))
    assert value not in before
    assert_no_server_path(before, worker)


def test_sts_references_follow_the_same_rules(worker, tiny_models, tmp_path):
    worker.populate(tiny_models / "tiny")
    for hub in ("uploads/data", str(worker.abs / "data"), "~/data"):
        with pytest.raises(DatasetUnavailable, match="not found or is not accessible"):
            load_sts_data(HubData(hub=hub), tmp_path / "work")


def test_a_real_hub_dataset_still_loads_next_to_a_folder_of_its_name(worker, tiny_models, tmp_path):
    """The same name in the cache and on disk: the cache's rows are the ones loaded."""
    worker.populate(tiny_models / "tiny")
    public = [{"anchor": f"public {i}", "positive": f"text {i}"} for i in range(4)]
    cache_hub_dataset(worker.hub, "uploads/data", {"default": {"train": public}}, fmt="jsonl")
    data = load_train_data(HubData(hub="uploads/data"), tmp_path / "work")
    assert data["anchor"] == [r["anchor"] for r in public]


# Base models: valid names existing relative to the cwd, and names that are paths.
MODEL_IDS = ["org/model", "org/real", "uploads", "team", "org/name"]
MODEL_PATHS = [
    "{abs}/tiny",
    "{abs}",
    "{cwd}/org/model",
    "file://{abs}/tiny",
    "~/data/tiny",
    "~",
    "../x/tiny",
    "./org/model",
    "org/model/",
    "org/model\n",
    "uploads/data/tiny",
    "team/data/tiny",
    "a/../org/model",
]


@pytest.mark.parametrize("name", MODEL_IDS)
def test_a_base_model_id_that_exists_on_the_worker_is_just_an_id(worker, tiny_models, name):
    before = model_error(name, worker)
    worker.populate(tiny_models / "tiny")
    after = model_error(name, worker)
    assert after == before
    assert "not found or is not accessible" in after
    assert_no_server_path(after, worker)


@pytest.mark.parametrize("template", MODEL_PATHS)
def test_a_base_model_named_by_a_path_is_refused_alike(worker, tiny_models, template):
    name = worker.name(template)
    before = model_error(name, worker)
    worker.populate(tiny_models / "tiny")
    after = model_error(name, worker)
    assert after == before
    assert "not found or is not accessible" in after
    if name.strip():
        assert name.strip() not in after
    assert_no_server_path(after, worker)


def test_model_dir_names_still_load(worker, tiny_models):
    """Names inside the configured model directories are the one place a name meets a folder."""
    model = load_base_model("tiny", (tiny_models,), "cpu")
    assert model.encode(["A dog runs."]).shape == (1, 64)


# --------------------------------------------------------------------------------------------
# The rules themselves, and the API's schema (a 422 naming the field)

REFUSED_IDS = [
    "org/name\n",
    "name\n",
    "\norg/name",
    "/abs",
    "/abs/path",
    "file://x",
    "file:///etc/passwd",
    "~/x",
    "~",
    "a/../b",
    "../b",
    "..",
    ".",
    "a/b/c",
    "a/b/",
    "/a",
    "a//b",
    "a\\b",
    "a b",
    "a\x00b",
    "org--x/name",
    "a" * 97,
    "o/" + "n" * 97,
    "-a/b",
    "a/b.git",
    "",
]


@pytest.mark.parametrize("value", REFUSED_IDS)
def test_names_refuse_what_is_no_hub_id(value):
    with pytest.raises(ValueError):
        names.check_hub_id(value)
    with pytest.raises(ValueError):
        names.check_model_name(value)


@pytest.mark.parametrize(
    "value", ["name", "org/name", "sentence-transformers/all-nli", "a_b.c-d/e.f", "x" * 96]
)
def test_names_accept_hub_ids(value):
    assert names.check_hub_id(value) == value
    assert names.check_model_name(value) == value


def job(**fields: Any) -> dict[str, Any]:
    return {"base_model": "org/model", "train_dataset": "ds_0123abcd", **fields}


def refused_at(payload: dict[str, Any]) -> list[tuple[Any, ...]]:
    with pytest.raises(ValidationError) as info:
        JobCreate.model_validate(payload)
    return [error["loc"] for error in info.value.errors()]


@pytest.mark.parametrize("value", REFUSED_IDS)
def test_the_api_refuses_a_hub_dataset_that_is_no_hub_id(value):
    locations = refused_at(job(train_dataset={"hub": value}))
    assert ("train_dataset", "HubDatasetRef", "hub") in locations


@pytest.mark.parametrize("value", REFUSED_IDS)
def test_the_api_refuses_a_base_model_that_is_no_name(value):
    assert refused_at(job(base_model=value)) == [("base_model",)]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("config", "../x"),
        ("config", "a/b"),
        ("config", "/etc"),
        ("config", "triplet\n"),
        ("config", "a..b"),
        ("config", "-x"),
        ("split", "train\n"),
        ("split", "../train"),
        ("split", "train[:5]"),
        ("split", "a..b"),
        ("revision", "../main"),
        ("revision", "/main"),
        ("revision", "-main"),
        ("revision", "main\n"),
        ("revision", "a//b"),
        ("revision", "refs/./pr"),
        ("revision", "v1..v2"),
        ("revision", "x" * 101),
    ],
)
def test_the_api_refuses_config_split_revision_that_could_be_paths(field, value):
    locations = refused_at(job(eval_dataset={"hub": "org/nli", field: value}))
    assert ("eval_dataset", "HubDatasetRef", field) in locations


@pytest.mark.parametrize(
    "columns",
    [
        {f"negative_{i}": f"c{i}" for i in range(1, 70)},
        {"anchor": "q" * 201, "positive": "p"},
        {"anchor": "q\n", "positive": "p"},
        {"anchor": "q", "positive": "p\x00"},
        {"anchor\t": "q", "positive": "p"},
        {"anchor": "", "positive": "p"},
    ],
)
def test_the_api_bounds_hub_column_mappings(columns):
    locations = refused_at(job(train_dataset={"hub": "org/nli", "columns": columns}))
    assert ("train_dataset", "HubDatasetRef", "columns") in locations


def test_the_api_accepts_good_references():
    created = JobCreate.model_validate(
        job(
            train_dataset={
                "hub": "sentence-transformers/all-nli",
                "config": "triplet",
                "split": "train",
                "revision": "refs/pr/1",
                "columns": {"anchor": "query", "positive": "answer", "negative": "hard neg"},
            },
            test_dataset={"hub": "org/nli", "revision": "0123456789abcdef0123456789abcdef01234567"},
            base_model="all-MiniLM-L6-v2",
        )
    )
    assert created.card_examples is False
    assert JobCreate.model_validate(job(card_examples=True)).card_examples is True


def test_stored_references_are_shown_as_stored():
    """Rows stored before the rules still read back (GET /jobs); the worker refuses them."""
    stored = {"hub": "/srv/old", "config": "../x", "split": "train", "revision": "-x"}
    with pytest.raises(ValidationError):
        HubDatasetRef.model_validate(stored)
    assert HubDatasetRef.model_validate(stored, context={STORED: True}).hub == "/srv/old"
