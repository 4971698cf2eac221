"""The store a process uses, from EMBEDTUNE_STORAGE_URL."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from app.settings import Settings, get_settings
from app.storage.base import ObjectStore


def store_from_url(url: str, s3_endpoint_url: str | None = None) -> ObjectStore:
    """`file:///abs/path` or `s3://bucket[/prefix]`; ValueError naming what is wrong."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"storage URL {url!r}: a file URL needs an absolute path, file:///…")
        from app.storage.files import FileStore

        return FileStore(Path(parts.path))
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"storage URL {url!r}: name the bucket, s3://bucket[/prefix]")
        # Imported here: boto3 takes a while to import and the file backend does not need it.
        from app.storage.s3 import S3Store

        return S3Store(parts.netloc, parts.path, endpoint_url=s3_endpoint_url)
    raise ValueError(f"storage URL {url!r}: use file:///abs/path or s3://bucket[/prefix]")


def store_for(settings: Settings) -> ObjectStore:
    return store_from_url(settings.resolved_storage_url, settings.s3_endpoint_url)


@lru_cache
def get_store() -> ObjectStore:
    """This process's store (from get_settings(); cached like it)."""
    return store_for(get_settings())
