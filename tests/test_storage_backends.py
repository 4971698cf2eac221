"""The store's contract, held by both backends: a folder and a real S3-protocol server."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.storage import ObjectMissing, ObjectStore, StorageUnavailable, store_from_url
from app.storage.s3 import PART_BYTES
from tests.support.s3 import S3_ENV, S3Server


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(params=["file", "s3"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, s3_server: S3Server, s3_env: None
) -> Iterator[ObjectStore]:
    if request.param == "file":
        yield store_from_url(f"file://{tmp_path / 'store'}")
    else:
        prefix = f"t-{secrets.token_hex(4)}"
        yield store_from_url(s3_server.url(prefix), s3_server.endpoint_url)


def test_put_get_head_list_delete(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"hello store")
    store.put_file("datasets/ds_1.jsonl", src)
    store.put_file("jobs/j1/attempt-1/model.tar.gz", src)
    store.put_file("jobs/j1/checkpoints/attempt-1/checkpoint-2/a.bin", src)

    info = store.head("datasets/ds_1.jsonl")
    assert info is not None and info.size == len(b"hello store")
    assert store.head("datasets/ds_2.jsonl") is None
    assert b"".join(store.iter_bytes("datasets/ds_1.jsonl", 4)) == b"hello store"
    dest = tmp_path / "out" / "copy.bin"
    store.get_file("datasets/ds_1.jsonl", dest)
    assert dest.read_bytes() == b"hello store"
    assert sorted(i.key for i in store.list("jobs/j1/")) == [
        "jobs/j1/attempt-1/model.tar.gz",
        "jobs/j1/checkpoints/attempt-1/checkpoint-2/a.bin",
    ]
    # A prefix is a folder: jobs/j1/ does not match jobs/j10/.
    store.put_file("jobs/j10/attempt-1/model.tar.gz", src)
    assert store.delete_prefix("jobs/j1/") == 2
    assert [i.key for i in store.list("jobs/")] == ["jobs/j10/attempt-1/model.tar.gz"]
    store.delete("datasets/ds_1.jsonl")
    store.delete("datasets/ds_1.jsonl")  # twice: no error
    assert store.head("datasets/ds_1.jsonl") is None


def test_missing_objects(store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(ObjectMissing):
        store.iter_bytes("datasets/nope.jsonl")
    with pytest.raises(ObjectMissing):
        store.get_file("datasets/nope.jsonl", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_streamed_writer_multipart_and_abort(
    store: ObjectStore, request: pytest.FixtureRequest, s3_server: S3Server
) -> None:
    # Larger than one part: a multipart upload on S3, written in pieces.
    piece = os.urandom(1024 * 1024)
    pieces = PART_BYTES // len(piece) * 2 + 3
    digest = hashlib.sha256()
    with store.writer("datasets/big.parquet") as out:
        for _ in range(pieces):
            out.write(piece)
            digest.update(piece)
        out.commit()
    info = store.head("datasets/big.parquet")
    assert info is not None and info.size == pieces * len(piece)
    assert hashlib.sha256(b"".join(store.iter_bytes("datasets/big.parquet"))).hexdigest() == (
        digest.hexdigest()
    )

    # Aborted half-way (past the first part): no object, and no pending upload left.
    with pytest.raises(RuntimeError), store.writer("datasets/rejected.jsonl") as out:
        for _ in range(PART_BYTES // len(piece) + 1):
            out.write(piece)
        raise RuntimeError("validation failed")
    assert store.head("datasets/rejected.jsonl") is None
    assert [i.key for i in store.list("datasets/")] == ["datasets/big.parquet"]
    if request.node.callspec.params["store"] == "s3":
        assert not any(k.endswith("rejected.jsonl") for k in s3_server.pending_multipart_uploads())


def test_keys_made_of_client_strings_are_refused(store: ObjectStore, tmp_path: Path) -> None:
    for key in ("../etc/passwd", "/abs", "datasets/../x", "a//b", "datasets/x\n", ""):
        with pytest.raises(ValueError):
            store.head(key)


def test_presigned_url_serves_the_object(store: ObjectStore, tmp_path: Path) -> None:
    import httpx

    src = tmp_path / "m.tar.gz"
    src.write_bytes(b"model bytes")
    store.put_file("jobs/j/attempt-1/model.tar.gz", src)
    url = store.presigned_url("jobs/j/attempt-1/model.tar.gz", 60, "j-model.tar.gz")
    if url is None:
        assert store.location.startswith("file://")  # a folder store always streams
        return
    answer = httpx.get(url)
    assert answer.status_code == 200 and answer.content == b"model bytes"
    assert "j-model.tar.gz" in answer.headers["content-disposition"]


def test_unreachable_or_misconfigured_store(
    s3_env: None, s3_server: S3Server, tmp_path: Path
) -> None:
    from tests.support.services import free_port

    down = store_from_url("s3://embedtune", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StorageUnavailable, match="unreachable"):
        down.check()
    with pytest.raises(StorageUnavailable):
        down.head("datasets/x.jsonl")
    no_bucket = store_from_url("s3://no-such-bucket", s3_server.endpoint_url)
    with pytest.raises(StorageUnavailable, match="refused"):
        no_bucket.check()
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o500)
    if os.geteuid() != 0:  # root writes anywhere
        with pytest.raises(StorageUnavailable):
            store_from_url(f"file://{read_only}").check()


@pytest.mark.parametrize(
    "url", ["ftp://x", "file://relative/path", "s3://", "s3:///prefix", "/abs/path"]
)
def test_bad_storage_urls(url: str) -> None:
    with pytest.raises(ValueError, match="storage URL"):
        store_from_url(url)


def test_a_folder_store_lists_while_another_process_deletes(tmp_path: Path) -> None:
    # Workers list a job's checkpoints while another attempt prunes them: a folder that goes
    # away mid-listing is not an error.
    import shutil
    import threading

    store = store_from_url(f"file://{tmp_path / 'store'}")
    src = tmp_path / "f.bin"
    src.write_bytes(b"x")
    stop = threading.Event()

    def churn() -> None:
        n = 0
        while not stop.is_set():
            folder = f"jobs/j/checkpoints/attempt-1/checkpoint-{n}"
            for part in ("model.safetensors", "optimizer.pt", "embedtune-complete"):
                store.put_file(f"{folder}/{part}", src)
            shutil.rmtree(tmp_path / "store" / folder, ignore_errors=True)
            n += 1

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        for _ in range(300):
            for info in store.list("jobs/j/checkpoints/"):
                assert info.key.startswith("jobs/j/checkpoints/attempt-1/checkpoint-")
    finally:
        stop.set()
        thread.join()
