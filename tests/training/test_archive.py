"""Packing a model folder into a downloadable .tar.gz."""

from __future__ import annotations

import hashlib
import shutil
import tarfile

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from worker.training.archive import make_archive


def test_archive_round_trips_to_a_loadable_model(tiny_models, tmp_path):
    model_dir = tiny_models / "tiny"
    archive = tmp_path / "downloads" / "model.tar.gz"
    info = make_archive(model_dir, archive)

    data = archive.read_bytes()
    assert info.size_bytes == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()

    with tarfile.open(archive, "r:gz") as tar:
        names = tar.getnames()
        assert "modules.json" in names and "model.safetensors" in names
        assert "1_Pooling/config.json" in names
        assert not any(n.startswith(("/", "..", "tiny")) for n in names)
        out = tmp_path / "extracted"
        out.mkdir()
        tar.extractall(out, filter="data")

    original = sorted(p.relative_to(model_dir) for p in model_dir.rglob("*"))
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == original
    sentences = ["A child plays in the snow.", "Nobody is outside."]
    np.testing.assert_allclose(
        SentenceTransformer(str(out), device="cpu").encode(sentences),
        SentenceTransformer(str(model_dir), device="cpu").encode(sentences),
        rtol=1e-6,
        atol=1e-6,
    )
    assert list(archive.parent.iterdir()) == [archive], "temporary files were left behind"


def test_archive_replaces_an_existing_file(tiny_models, tmp_path):
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"stale")
    info = make_archive(tiny_models / "tiny", archive)
    assert info.size_bytes == archive.stat().st_size > 5
    with tarfile.open(archive, "r:gz") as tar:
        assert "modules.json" in tar.getnames()


def test_missing_model_folder_leaves_nothing_behind(tmp_path):
    with pytest.raises(NotADirectoryError):
        make_archive(tmp_path / "nope", tmp_path / "out" / "model.tar.gz")
    assert not (tmp_path / "out" / "model.tar.gz").exists()


def test_a_failed_write_keeps_the_previous_archive(tiny_models, tmp_path, monkeypatch):
    archive = tmp_path / "model.tar.gz"
    make_archive(tiny_models / "tiny", archive)
    before = archive.read_bytes()

    def broken_add(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tarfile.TarFile, "add", broken_add)
    with pytest.raises(OSError, match="disk full"):
        make_archive(tiny_models / "tiny", archive)
    assert archive.read_bytes() == before
    assert list(tmp_path.iterdir()) == [archive]


def test_archive_members_are_0644_and_the_archive_private(tiny_models, tmp_path):
    import os
    import stat

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_models / "tiny", model_dir)
    for path in [model_dir, *model_dir.rglob("*")]:
        os.chmod(path, 0o700 if path.is_dir() else 0o600)  # what the worker's umask leaves
    archive = tmp_path / "model.tar.gz"
    make_archive(model_dir, archive)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    assert members and all(m.uid == 0 and m.uname == "" for m in members)
    assert {m.mode for m in members if m.isfile()} == {0o644}
    assert {m.mode for m in members if m.isdir()} <= {0o755}
