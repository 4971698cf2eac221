"""Resolving client-given base model names, and loading them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.training.hub_cache import SHA, use_hub_cache
from worker.training.errors import ModelNotFound
from worker.training.models import load_base_model, resolve_base_model, short_reason


def fake_model(folder: Path, marker: str = "modules.json") -> Path:
    folder.mkdir(parents=True)
    (folder / marker).write_text("{}")
    return folder


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two model dirs and a folder outside both that looks like a model."""
    first, second, outside = tmp_path / "models-a", tmp_path / "models-b", tmp_path / "outside"
    first.mkdir()
    second.mkdir()
    fake_model(outside)
    return first, second, outside


def test_finds_plain_and_nested_names(dirs):
    first, second, _ = dirs
    plain = fake_model(first / "mini")
    nested = fake_model(second / "org" / "model", marker="config.json")
    assert resolve_base_model("mini", (first, second)) == str(plain.resolve())
    assert resolve_base_model("org/model", (first, second)) == str(nested.resolve())


def test_first_model_dir_wins(dirs):
    first, second, _ = dirs
    fake_model(first / "m")
    fake_model(second / "m")
    assert resolve_base_model("m", (first, second)) == str((first / "m").resolve())


def test_names_that_are_not_model_folders_are_hub_ids(dirs):
    first, second, _ = dirs
    (first / "org" / "empty").mkdir(parents=True)  # a folder, but no modules.json/config.json
    (first / "afile").write_text("x")
    for name in ("sentence-transformers/all-MiniLM-L6-v2", "org/empty", "org", "afile"):
        assert resolve_base_model(name, (first, second)) == name
    assert resolve_base_model("mini", (first / "missing-dir",)) == "mini"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/etc",
        "/tmp/outside",
        "../outside",
        "org/../../outside",
        "org/./model",
        "org//model",
        "org/",
        "..",
        "org\\model",
        "..\\outside",
        "~/model",
        "mini\x00",
    ],
)
def test_unsafe_names_are_refused(dirs, name):
    first, second, _ = dirs
    fake_model(first / "mini")
    fake_model(first / "org" / "model")
    with pytest.raises(ModelNotFound):
        resolve_base_model(name, (first, second))


def test_symlink_escaping_the_model_dir_is_refused(dirs):
    first, _, outside = dirs
    (first / "escape").symlink_to(outside, target_is_directory=True)
    (first / "org").mkdir()
    (first / "org" / "escape").symlink_to(outside, target_is_directory=True)
    (first / "parent").symlink_to(first.parent, target_is_directory=True)
    for name in ("escape", "org/escape", "parent/outside"):
        with pytest.raises(ModelNotFound, match="outside"):
            resolve_base_model(name, (first,))


def test_symlink_within_the_model_dir_is_followed(dirs):
    first, _, _ = dirs
    real = fake_model(first / "real" / "model")
    (first / "alias").symlink_to(first / "real", target_is_directory=True)
    assert resolve_base_model("alias/model", (first,)) == str(real.resolve())


def test_a_symlinked_model_dir_itself_is_fine(dirs, tmp_path):
    first, _, _ = dirs
    fake_model(first / "mini")
    link = tmp_path / "models-link"
    link.symlink_to(first, target_is_directory=True)
    assert resolve_base_model("mini", (link,)) == str((first / "mini").resolve())


def test_loads_a_folder_and_sets_max_seq_length(tiny_models):
    model = load_base_model("tiny", (tiny_models,), "cpu", max_seq_length=32)
    assert model.max_seq_length == 32
    assert model.encode(["A dog runs."]).shape == (1, 64)
    assert load_base_model("tiny", (tiny_models,), "cpu").max_seq_length == 128


def test_max_seq_length_is_capped_at_the_position_embeddings(tiny_models):
    model = load_base_model("tiny", (tiny_models,), "cpu", max_seq_length=4096)
    assert model.max_seq_length == 128  # the tiny BERT has 128 positions
    long_text = " ".join(["word"] * 400)
    assert model.encode([long_text]).shape == (1, 64)


def test_broken_model_folder_is_model_not_found_without_paths(tiny_models, tmp_path):
    broken = tmp_path / "models" / "broken"
    shutil.copytree(tiny_models / "tiny", broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelNotFound) as info:
        load_base_model("broken", (tmp_path / "models",), "cpu")
    assert "broken" in info.value.message
    assert str(tmp_path) not in info.value.message


def cache_hub_model(cache: Path, repo: str, source: Path, sha: str = SHA) -> Path:
    """Lay out the model folder `source` as Hub model `repo` (commit `sha`, refs/main) in a
    Hugging Face hub cache; returns the snapshot folder."""
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / sha
    shutil.copytree(source, snapshot)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(sha)
    return snapshot


def test_hub_model_loads_from_the_snapshot_the_hub_client_resolves(
    tiny_models, tmp_path, monkeypatch
):
    cache = use_hub_cache(tmp_path / "hf-hub", monkeypatch)
    cache_hub_model(cache, "org/tiny", tiny_models / "tiny")
    empty = tmp_path / "no-models"
    empty.mkdir()
    model = load_base_model("org/tiny", (empty,), "cpu")
    assert model.encode(["A dog runs."]).shape == (1, 64)
    # The card names the Hub model and commit, not the cache folder it was read from.
    assert model.model_card_data.base_model == "org/tiny"
    assert model.model_card_data.base_model_revision == SHA


def test_unknown_hub_model_is_model_not_found(tmp_path, monkeypatch):
    use_hub_cache(tmp_path / "hf-hub", monkeypatch)
    with pytest.raises(ModelNotFound) as info:
        load_base_model("embedtune-tests/missing", (tmp_path,), "cpu")
    message = info.value.message
    assert message.startswith("Base model 'embedtune-tests/missing' was not found or is not ")
    assert "not a folder in the configured model directories" in message
    assert str(tmp_path) not in message


def test_invalid_hub_id_is_model_not_found_without_echoing_it(tmp_path):
    with pytest.raises(ModelNotFound, match="not found or is not accessible") as info:
        load_base_model("a/b/c", (tmp_path,), "cpu")
    assert "a/b/c" not in info.value.message


def test_hub_id_never_reads_the_working_directory(tiny_models, tmp_path, monkeypatch):
    """sentence-transformers treats an existing relative path as a local folder: a Hub id that
    happens to exist under the worker's working directory is still only looked up by the Hub
    client, and is unavailable exactly like one that does not exist."""
    use_hub_cache(tmp_path / "hf-hub", monkeypatch)
    monkeypatch.chdir(tmp_path)
    empty_dir = tmp_path / "no-models"
    empty_dir.mkdir()
    with pytest.raises(ModelNotFound) as missing:
        load_base_model("org/model", (empty_dir,), "cpu")
    shutil.copytree(tiny_models / "tiny", tmp_path / "org" / "model")
    with pytest.raises(ModelNotFound) as existing:
        load_base_model("org/model", (empty_dir,), "cpu")
    assert existing.value.message == missing.value.message
    assert "not found or is not accessible" in existing.value.message


def test_short_reason_drops_paths_and_extra_lines():
    exc = OSError(
        "Can't load /srv/models/secret/config.json from https://huggingface.co/x/y\nmore detail"
    )
    reason = short_reason(exc)
    assert "/srv/models" not in reason
    assert "https://huggingface.co/x/y" in reason
    assert "more detail" not in reason
    assert len(short_reason(RuntimeError("x" * 1000))) <= 300
