"""A store in a local (or mounted) folder: `file:///abs/path`."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from app.storage.base import (
    CHUNK_BYTES,
    ObjectInfo,
    ObjectMissing,
    ObjectStore,
    ObjectWriter,
    StorageUnavailable,
    check_key,
)


class _FileWriter(ObjectWriter):
    def __init__(self, target: Path) -> None:
        self._target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        self._tmp = Path(name)
        self._out: BinaryIO | None = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        assert self._out is not None, "written after commit or abort"
        with _unavailable_on_os_error(self._target.parent):
            self._out.write(data)

    def commit(self) -> None:
        assert self._out is not None, "committed twice"
        out, self._out = self._out, None
        try:
            out.flush()
            os.fsync(out.fileno())
            out.close()
            os.replace(self._tmp, self._target)
        except OSError as exc:
            self._tmp.unlink(missing_ok=True)
            raise StorageUnavailable(
                f"the storage folder {self._target.parent} cannot be written: {exc.strerror or exc}"
            ) from exc
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise

    def abort(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        self._tmp.unlink(missing_ok=True)


class FileStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.location = f"file://{self.root}"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def writer(self, key: str) -> ObjectWriter:
        path = self._path(key)
        with _unavailable_on_os_error(self.root):
            return _FileWriter(path)

    def put_file(self, key: str, path: Path) -> None:
        with (
            Path(path).open("rb") as src,
            self.writer(key) as out,
            _unavailable_on_os_error(self.root),
        ):
            while chunk := src.read(CHUNK_BYTES):
                out.write(chunk)
            out.commit()

    def get_file(self, key: str, path: Path) -> None:
        source = self._path(key)
        if not source.is_file():
            raise ObjectMissing(key)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
        try:
            shutil.copyfile(source, name)
            os.replace(name, path)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise

    def iter_bytes(self, key: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        try:
            fh = self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectMissing(key) from exc
        return _chunks(fh, chunk_bytes)

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        return ObjectInfo(key, path.stat().st_size) if path.is_file() else None

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        folder = self.root / prefix.rstrip("/") if prefix.rstrip("/") else self.root
        found: dict[str, int] = {}
        # os.walk skips a folder removed while it walks, and a file removed between being seen
        # and its stat is left out: other processes delete checkpoints while one lists them.
        for dirpath, _, filenames in os.walk(folder):
            for name in filenames:
                if name.startswith("."):
                    continue  # a writer's partial file, or the health probe
                path = Path(dirpath) / name
                try:
                    size = path.stat().st_size
                except FileNotFoundError:
                    continue
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found[key] = size
        for key in sorted(found):
            yield ObjectInfo(key, found[key])

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        self._prune(path.parent)

    def delete_prefix(self, prefix: str) -> int:
        removed = super().delete_prefix(prefix)
        folder = self.root / prefix.rstrip("/")
        if prefix.endswith("/") and folder.is_dir() and folder != self.root:
            # Partial files of writers that died (".name.part") go too.
            shutil.rmtree(folder, ignore_errors=True)
            self._prune(folder.parent)
        return removed

    def _prune(self, folder: Path) -> None:
        """Remove empty folders up to (not including) the root."""
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".health-", delete=True):
                pass
        except OSError as exc:
            raise StorageUnavailable(
                f"the storage folder {self.root} cannot be written: {exc.strerror}"
            ) from exc


@contextlib.contextmanager
def _unavailable_on_os_error(root: Path) -> Iterator[None]:
    """A folder that cannot be written (full, read-only, unmounted) is a store that is down."""
    try:
        yield
    except OSError as exc:
        raise StorageUnavailable(
            f"the storage folder {root} cannot be written: {exc.strerror or exc}"
        ) from exc


def _chunks(fh: BinaryIO, chunk_bytes: int) -> Iterator[bytes]:
    with fh:
        while chunk := fh.read(chunk_bytes):
            yield chunk
