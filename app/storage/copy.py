"""Copy what the database refers to from one store into another (`embedtune storage copy`).

The database is the record: every dataset's stored file, every succeeded job's model (its
recorded key, or the pre-0010 `jobs/<id>/model.tar.gz`) and the checkpoints of queued and
running jobs are copied; anything else in the source is counted, not copied. An object goes
through the destination's streamed writer with its sha256 computed on the way, is checked against
the checksum the database recorded for it (when the record has the stored bytes' checksum), and
is read back from the destination and hashed again before it counts as copied. Nothing is ever
deleted from the source, so a run can be repeated: objects the destination already holds with
the same size and sha256 are skipped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.datasets.models import Dataset
from app.jobs.models import Job
from app.jobs.states import JobStatus
from app.storage.base import ObjectMissing, ObjectStore, StorageError
from app.storage.keys import checkpoints_prefix, legacy_model_key
from rules.checkpoints import completes_last

# The top-level prefixes the service writes under: what "objects in the source" means (a
# folder store is often the whole data dir, which holds the SQLite file and scratch space too).
SERVICE_PREFIXES = ("datasets/", "jobs/")


class ObjectKind(StrEnum):
    DATASET = "dataset"
    MODEL = "model"
    CHECKPOINT = "checkpoint"


class Outcome(StrEnum):
    """What happened to one object; the values are stable (printed, and meant for scripts)."""

    COPIED = "copied"
    ALREADY_THERE = "already_there"
    WOULD_COPY = "would_copy"  # --dry-run
    MISSING = "missing"  # the record names it, the source does not have it
    CORRUPT = "corrupt"  # the source differs from the size or sha256 the record holds
    FAILED = "failed"  # a store error, or the destination read back different bytes

    @property
    def ok(self) -> bool:
        return self in {Outcome.COPIED, Outcome.ALREADY_THERE, Outcome.WOULD_COPY}


@dataclass(frozen=True)
class RecordedObject:
    """An object the database refers to, with what the record knows of its bytes."""

    key: str
    kind: ObjectKind
    owner: str  # the dataset or job id
    sha256: str | None = None  # None: the record has no checksum of these exact bytes
    size: int | None = None


@dataclass(frozen=True)
class ObjectResult:
    obj: RecordedObject
    outcome: Outcome
    size: int = 0
    detail: str = ""


@dataclass
class CopyReport:
    source: str
    destination: str
    dry_run: bool
    results: list[ObjectResult] = field(default_factory=list)
    # Objects under SERVICE_PREFIXES in the source that no record refers to (not copied).
    unreferenced: int = 0

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    def total_bytes(self, outcome: Outcome) -> int:
        return sum(r.size for r in self.results if r.outcome == outcome)

    @property
    def ok(self) -> bool:
        return all(r.outcome.ok for r in self.results)


def recorded_objects(session: Session, source: ObjectStore) -> list[RecordedObject]:
    """Every object the database says the store holds, sorted by key. Checkpoints have no row
    of their own: they are what the source lists under each queued or running job's prefix."""
    found: list[RecordedObject] = []
    for ds in session.execute(
        select(
            Dataset.id,
            Dataset.storage_key,
            Dataset.stored_format,
            Dataset.sha256,
            Dataset.size_bytes,
        ).order_by(Dataset.id)
    ):
        # sha256 and size_bytes describe the uploaded bytes: the stored file's only when it is
        # the upload itself, not a conversion (NLI pairs stored as triplets).
        as_uploaded = ds.stored_format is None
        found.append(
            RecordedObject(
                key=ds.storage_key,
                kind=ObjectKind.DATASET,
                owner=ds.id,
                sha256=ds.sha256 if as_uploaded else None,
                size=ds.size_bytes if as_uploaded else None,
            )
        )
    for job in session.execute(
        select(Job.id, Job.model_key, Job.model_sha256, Job.model_size_bytes)
        .where(Job.status == JobStatus.SUCCEEDED.value)
        .order_by(Job.id)
    ):
        found.append(
            RecordedObject(
                key=job.model_key or legacy_model_key(job.id),
                kind=ObjectKind.MODEL,
                owner=job.id,
                sha256=job.model_sha256,
                size=job.model_size_bytes,
            )
        )
    active = session.scalars(
        select(Job.id)
        .where(Job.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]))
        .order_by(Job.id)
    )
    for job_id in active:
        for info in source.list(checkpoints_prefix(job_id)):
            found.append(RecordedObject(info.key, ObjectKind.CHECKPOINT, job_id))
    # A checkpoint's marker last: a run cut short never leaves a "complete" partial checkpoint.
    return sorted(found, key=lambda o: completes_last(o.key))


def copy_recorded(
    objects: Iterable[RecordedObject],
    source: ObjectStore,
    destination: ObjectStore,
    *,
    dry_run: bool = False,
    on_result: Callable[[ObjectResult], None] | None = None,
) -> CopyReport:
    """Copy `objects` from `source` to `destination` (or, with `dry_run`, say what a run would
    do, reading both stores and writing nothing). Never raises for one object: each ends as an
    ObjectResult, passed to `on_result` as it is decided. Store errors while counting the
    unreferenced objects do raise (StorageError)."""
    objects = list(objects)
    report = CopyReport(source.location, destination.location, dry_run)
    for obj in objects:
        result = _copy_one(obj, source, destination, dry_run)
        report.results.append(result)
        if on_result is not None:
            on_result(result)
    recorded = {o.key for o in objects}
    report.unreferenced = sum(
        1 for prefix in SERVICE_PREFIXES for info in source.list(prefix) if info.key not in recorded
    )
    return report


def _copy_one(
    obj: RecordedObject, source: ObjectStore, destination: ObjectStore, dry_run: bool
) -> ObjectResult:
    try:
        return _copy_or_skip(obj, source, destination, dry_run)
    except ObjectMissing:
        # Gone between the lookup and the read (a dataset deleted meanwhile).
        return ObjectResult(obj, Outcome.MISSING, detail="not in the source")
    except StorageError as exc:
        return ObjectResult(obj, Outcome.FAILED, detail=str(exc) or type(exc).__name__)


def _copy_or_skip(
    obj: RecordedObject, source: ObjectStore, destination: ObjectStore, dry_run: bool
) -> ObjectResult:
    info = source.head(obj.key)
    if info is None:
        return ObjectResult(obj, Outcome.MISSING, detail="not in the source")
    if obj.size is not None and info.size != obj.size:
        return ObjectResult(
            obj,
            Outcome.CORRUPT,
            info.size,
            f"the source holds {info.size} bytes, the record says {obj.size}",
        )
    there = destination.head(obj.key)
    source_sha: str | None = None
    if there is not None and there.size == info.size:
        # A recorded checksum spares reading the source (a destination that matches the record
        # is right, whatever became of the source); without one, the source is the truth.
        expected = obj.sha256 or (source_sha := _sha256(source.iter_bytes(obj.key)))
        if _sha256(destination.iter_bytes(obj.key)) == expected:
            return ObjectResult(obj, Outcome.ALREADY_THERE, info.size)
    if dry_run:
        source_sha = source_sha or _sha256(source.iter_bytes(obj.key))
        if obj.sha256 is not None and source_sha != obj.sha256:
            return _corrupt(obj, info.size, source_sha)
        return ObjectResult(obj, Outcome.WOULD_COPY, info.size)

    digest = hashlib.sha256()
    with destination.writer(obj.key) as out:
        for chunk in source.iter_bytes(obj.key):
            digest.update(chunk)
            out.write(chunk)
        copied_sha = digest.hexdigest()
        if obj.sha256 is not None and copied_sha != obj.sha256:
            # Never committed: the destination keeps whatever it had (nothing, usually).
            out.abort()
            return _corrupt(obj, info.size, copied_sha)
        out.commit()
    read_back = _sha256(destination.iter_bytes(obj.key))
    if read_back != copied_sha:
        # Wrong bytes must not be served once the deployment switches stores.
        destination.delete(obj.key)
        return ObjectResult(
            obj,
            Outcome.FAILED,
            info.size,
            f"the destination read back sha256 {read_back}, not {copied_sha}; removed it there",
        )
    return ObjectResult(obj, Outcome.COPIED, info.size)


def _corrupt(obj: RecordedObject, size: int, actual: str) -> ObjectResult:
    return ObjectResult(
        obj, Outcome.CORRUPT, size, f"the source has sha256 {actual}, the record says {obj.sha256}"
    )


def _sha256(chunks: Iterator[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()
