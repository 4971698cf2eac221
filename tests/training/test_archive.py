"""Packing a model folder into a downloadable .tar.gz."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from worker.training.archive import ArchiveInfo, make_archive, write_archive


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


def _umask_copy(source, dest):  # type: ignore[no-untyped-def]
    """`source` copied with the modes a worker's umask 077 leaves: files 0600, folders 0700."""
    import os

    shutil.copytree(source, dest)
    for path in [dest, *dest.rglob("*")]:
        os.chmod(path, 0o700 if path.is_dir() else 0o600)
    return dest


def test_tar_extracts_0644_files_and_a_loadable_model(tiny_models, tmp_path):
    """The real `tar -xzf` takes the archive, and what it extracts is 0644/0755 and loads, even
    when the worker's files were 0600 (issue 12: model.safetensors came out 0600)."""
    import os
    import stat
    import subprocess

    model_dir = _umask_copy(tiny_models / "tiny", tmp_path / "model")
    archive = tmp_path / "model.tar.gz"
    make_archive(model_dir, archive)
    out = tmp_path / "extracted"
    out.mkdir()
    # umask 022 as a user's shell has it: a member stored 0600 or 0777 would not come out 0644.
    subprocess.run(
        ["sh", "-c", 'umask 022 && tar -xzf "$0" -C "$1"', str(archive), str(out)], check=True
    )
    files = [p for p in out.rglob("*") if p.is_file()]
    assert out / "model.safetensors" in files
    assert {stat.S_IMODE(os.stat(p).st_mode) for p in files} == {0o644}
    assert {stat.S_IMODE(os.stat(p).st_mode) for p in out.rglob("*") if p.is_dir()} == {0o755}
    sentences = ["A child plays in the snow.", "Nobody is outside."]
    np.testing.assert_allclose(
        SentenceTransformer(str(out), device="cpu").encode(sentences),
        SentenceTransformer(str(tiny_models / "tiny"), device="cpu").encode(sentences),
        rtol=1e-6,
        atol=1e-6,
    )


def test_the_archive_is_stored_gzip_of_the_same_bytes_every_time(tiny_models, tmp_path):
    """Level 0: gzip framing around the tar, about the size of the files (no time spent
    compressing float weights), and the same bytes for the same folder."""
    import gzip

    model_dir = tiny_models / "tiny"
    first, second = io.BytesIO(), io.BytesIO()
    info = write_archive(model_dir, first)
    assert write_archive(model_dir, second) == info
    data = first.getvalue()
    assert data == second.getvalue()
    assert data[:2] == b"\x1f\x8b"  # gzip magic: `tar -xzf` and browsers take it as gzip
    assert info == ArchiveInfo(len(data), hashlib.sha256(data).hexdigest())
    weights = sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file())
    assert len(gzip.decompress(data)) < len(data) < len(gzip.decompress(data)) * 1.01 + 1024
    assert len(data) > weights


def test_write_archive_streams_into_a_store_writer(tiny_models, tmp_path):
    """Straight into a store's writer: the object appears on commit with the announced bytes,
    and a writer aborted half-way leaves no object and no partial file."""
    from app.storage.files import FileStore

    store = FileStore(tmp_path / "store")
    key = "jobs/job_1/attempt-1/model.tar.gz"
    with store.writer(key) as out:
        info = write_archive(tiny_models / "tiny", out)
        assert store.head(key) is None  # nothing visible before the commit
        out.commit()
    stored = b"".join(store.iter_bytes(key))
    assert info == ArchiveInfo(len(stored), hashlib.sha256(stored).hexdigest())

    other = "jobs/job_2/attempt-1/model.tar.gz"
    with pytest.raises(NotADirectoryError), store.writer(other) as out:
        write_archive(tmp_path / "missing", out)
    assert store.head(other) is None
    assert list(store.list("jobs/job_2/")) == []
    assert not any((tmp_path / "store" / "jobs" / "job_2").rglob("*.part"))


def test_store_model_writes_the_whole_archive_again_after_an_outage(
    tiny_models, tmp_path, monkeypatch
):
    """The store fails half-way through the first upload: the retry writes the archive again
    from the start, and the stored object is exactly one archive with the announced checksum."""
    from app.storage.base import StorageUnavailable
    from app.storage.files import FileStore
    from worker import store_io

    class FlakyStore(FileStore):
        failures = 1

        def writer(self, key):  # type: ignore[no-untyped-def]
            real = super().writer(key)
            if FlakyStore.failures:
                FlakyStore.failures -= 1
                write = real.write

                def failing(data: bytes) -> None:
                    write(data)
                    raise StorageUnavailable("the store went away")

                real.write = failing  # type: ignore[method-assign]
            return real

    store = FlakyStore(tmp_path / "store")
    monkeypatch.setattr(store_io, "get_store", lambda: store)
    key = "jobs/job_1/attempt-1/model.tar.gz"
    info = store_io.store_model(key, tiny_models / "tiny")
    stored = b"".join(store.iter_bytes(key))
    assert FlakyStore.failures == 0
    assert info == ArchiveInfo(len(stored), hashlib.sha256(stored).hexdigest())
    with tarfile.open(fileobj=io.BytesIO(stored), mode="r:gz") as tar:
        assert "model.safetensors" in tar.getnames()
    assert [i.key for i in store.list("jobs/")] == [key]
