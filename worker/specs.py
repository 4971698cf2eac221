"""Turn a job row into the pure pipeline's TrainingSpec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.datasets.models import Dataset
from app.datasets.roles import hub_sources
from app.jobs.models import Job
from app.settings import Settings
from app.storage import ObjectMissing, get_store
from app.storage.scratch import local_copy
from worker.training.errors import DatasetUnavailable
from worker.training.spec import (
    STS_COLUMNS,
    CheckpointPolicy,
    DataSource,
    HubData,
    Hyperparameters,
    LocalData,
    TrainingSpec,
)


def _source(
    session: Session, settings: Settings, field: str, ref: Any, *, sts: bool = False
) -> DataSource | None:
    if ref is None:
        return None
    if isinstance(ref, dict):
        return HubData(
            hub=ref["hub"],
            config=ref.get("config"),
            split=ref.get("split") or "train",
            limit=ref.get("limit"),
            revision=ref.get("revision"),
            columns=hub_sources(ref.get("columns")),
        )
    dataset = session.get(Dataset, ref)
    try:
        if dataset is None:
            raise ObjectMissing(str(ref))
        # Fetched from the store into this worker's own cache (no shared disk needed).
        path = local_copy(get_store(), dataset.storage_key, settings)
    except ObjectMissing as exc:
        raise DatasetUnavailable(
            f"{field}: uploaded dataset '{ref}' is missing from storage; upload it again"
        ) from exc
    columns = tuple(dataset.text_columns)
    if sts and len(columns) < 3:
        # The two texts of an STS upload, then its score column.
        columns = (*columns, STS_COLUMNS[2])
    return LocalData(
        path=path,
        # A converted upload is stored in another format than it was uploaded in.
        format=(dataset.stored_format or dataset.format),  # type: ignore[arg-type]
        columns=columns,
    )


def build_spec(
    session: Session,
    settings: Settings,
    job: Job,
    work_dir: Path,
    output_dir: Path,
    checkpoints: CheckpointPolicy | None = None,
) -> TrainingSpec:
    train = _source(session, settings, "train_dataset", job.train_dataset)
    assert train is not None  # required by the API schema
    return TrainingSpec(
        base_model=job.base_model,
        train=train,
        eval=_source(session, settings, "eval_dataset", job.eval_dataset),
        test=_source(session, settings, "test_dataset", job.test_dataset),
        sts=_source(session, settings, "sts_dataset", job.sts_dataset, sts=True),
        loss="mnr",
        hyperparameters=Hyperparameters(**job.hyperparameters),
        output_dir=output_dir,
        work_dir=work_dir,
        model_dirs=tuple(settings.model_dirs),
        checkpoints=checkpoints,
        card_examples=bool(job.card_examples),
    )
