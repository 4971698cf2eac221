"""Object storage (app.storage.base) and each process's own scratch space (app.storage.scratch)."""

from app.storage.base import (
    ObjectInfo,
    ObjectMissing,
    ObjectStore,
    ObjectWriter,
    StorageError,
    StorageUnavailable,
)
from app.storage.factory import get_store, store_from_url
from app.storage.keys import (
    attempt_checkpoints_prefix,
    checkpoints_prefix,
    dataset_key,
    job_prefix,
    legacy_model_key,
    model_key,
)

__all__ = [
    "ObjectInfo",
    "ObjectMissing",
    "ObjectStore",
    "ObjectWriter",
    "StorageError",
    "StorageUnavailable",
    "attempt_checkpoints_prefix",
    "checkpoints_prefix",
    "dataset_key",
    "get_store",
    "job_prefix",
    "legacy_model_key",
    "model_key",
    "store_from_url",
]
