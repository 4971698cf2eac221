"""Loading a DataSource into a `datasets.Dataset` holding only its text columns, in loss order.

Training data has 2 columns (anchor, positive) or 3 (anchor, positive, negative); evaluation and
test data must be triplets, because the TripletEvaluator needs a negative for every anchor. STS
data has two texts and a float score (sentence1, sentence2, score). Without eval data, a seeded
share of the training rows is held out as the eval set (`split_holdout`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.training.errors import DatasetInvalid, DatasetUnavailable
from worker.training.holdout import HOLDOUT_MAX_ROWS as HOLDOUT_MAX_ROWS  # re-exported
from worker.training.holdout import HOLDOUT_MIN_TRAIN_ROWS as HOLDOUT_MIN_TRAIN_ROWS
from worker.training.holdout import HOLDOUT_SHARE, held_out_indices
from worker.training.models import short_reason
from worker.training.spec import STS_COLUMNS, DataSource, Holdout, HubData, LocalData

if TYPE_CHECKING:
    from datasets import Dataset

# The `datasets` builder for each uploaded file format.
LOCAL_BUILDERS: dict[str, str] = {"jsonl": "json", "csv": "csv", "parquet": "parquet"}
# Preferred Hub column names, in loss order.
HUB_COLUMNS: tuple[str, ...] = ("anchor", "positive", "negative")

# The hold-out rule lives in worker.training.holdout (imported by the API's job preflight too).


def load_train_data(
    source: DataSource, work_dir: Path, *, revisions: dict[str, str] | None = None
) -> Dataset:
    """Training data in loss order: anchor, positive, then any number of negatives.

    `revisions` (optional): a Hub source's resolved commit is stored in it under "train" (see
    resolve_hub_revision); the other loaders do the same under their role ("sts" for STS data).
    """
    return load_text_dataset(source, work_dir, role="train", revisions=revisions)


def load_triplet_data(
    source: DataSource, work_dir: Path, role: str, *, revisions: dict[str, str] | None = None
) -> Dataset:
    """Evaluation or test data (`role`): exactly 3 text columns (anchor, positive, negative)."""
    dataset = load_text_dataset(source, work_dir, role=role, revisions=revisions)
    if len(dataset.column_names) != 3:
        raise DatasetInvalid(
            f"The {role} data must be triplets (anchor, positive, negative) to evaluate on, "
            f"but it has {len(dataset.column_names)} text columns: "
            f"{', '.join(dataset.column_names)}."
        )
    return dataset


def load_sts_data(
    source: DataSource, work_dir: Path, *, revisions: dict[str, str] | None = None
) -> Dataset:
    """STS data: columns sentence1, sentence2 (texts) and score (float64), in that order.

    Local files name their columns in `source.columns` (two texts, then the score); Hub datasets
    use sentence1/sentence2/score when present, else their first two text columns and first
    numeric column. Scores must be finite numbers and not all equal (correlation with a constant
    is undefined); they are meant to lie in [0, 1], but correlations do not depend on the scale.
    """
    role = "STS"
    if isinstance(source, LocalData):
        if len(source.columns) != 3:
            raise DatasetInvalid(
                f"The {role} data needs 3 columns (two texts and a score), "
                f"got {len(source.columns)}."
            )
        dataset = _load_local(source, work_dir, role, score_column=source.columns[2])
    elif isinstance(source, HubData):
        dataset = _load_hub(source, role, sts=True, revisions=revisions, revision_key="sts")
    else:  # pragma: no cover - the DataSource union is closed
        raise TypeError(f"unknown data source {type(source).__name__}")
    return _check_sts(dataset, role)


def load_text_dataset(
    source: DataSource, work_dir: Path, *, role: str, revisions: dict[str, str] | None = None
) -> Dataset:
    """Load `source` and keep only its text columns, in loss order; DatasetUnavailable when it
    cannot be loaded, DatasetInvalid when it loads but cannot be used. A Hub source's resolved
    commit goes into `revisions[role]` (when given and known)."""
    if isinstance(source, LocalData):
        dataset = _load_local(source, work_dir, role)
    elif isinstance(source, HubData):
        dataset = _load_hub(source, role, revisions=revisions)
    else:  # pragma: no cover - the DataSource union is closed
        raise TypeError(f"unknown data source {type(source).__name__}")
    _check_texts(dataset, role)
    return dataset


def split_holdout(train: Dataset, seed: int) -> tuple[Dataset, Dataset | None, Holdout | None]:
    """Hold out a seeded share of `train` as an eval set: (rows to train on, held out, Holdout).

    Held out by anchor (the first column), with the rule of worker.training.holdout: about
    HOLDOUT_SHARE of the rows (at most HOLDOUT_MAX_ROWS), all rows of a held-out anchor together,
    picked by `seed`, so the same data and seed always hold out the same rows. Both parts keep the
    original row order. When nothing is held out (fewer than HOLDOUT_MIN_TRAIN_ROWS rows, or every
    anchor too large): (train, None, None).
    """
    held = held_out_indices(train[train.column_names[0]], seed)
    if not held:
        return train, None, None
    chosen = set(held)
    kept = [i for i in range(len(train)) if i not in chosen]
    return (
        train.select(kept),
        train.select(held),
        Holdout(rows=len(held), share=HOLDOUT_SHARE, seed=seed),
    )


def _load_local(
    source: LocalData, work_dir: Path, role: str, score_column: str | None = None
) -> Dataset:
    from datasets import load_dataset

    builder = LOCAL_BUILDERS.get(source.format)
    if builder is None:
        raise DatasetInvalid(f"The {role} file has an unsupported format {source.format!r}.")
    if len(source.columns) < 2:
        raise DatasetInvalid(
            f"The {role} data needs at least 2 columns (anchor, positive), "
            f"got {len(source.columns)}."
        )
    if not Path(source.path).is_file():
        raise DatasetUnavailable(f"The uploaded {role} file is missing on the worker.")
    # pandas, under the csv builder, would turn texts such as "NA", "null" or "" into missing
    # values and "42" into a number; the upload validator accepted them as text, so keep them.
    options: dict[str, Any] = {}
    if builder == "csv":
        from datasets import Features, Value

        options = {
            "usecols": list(source.columns),
            "features": Features(
                {c: Value("float64" if c == score_column else "string") for c in source.columns}
            ),
            "keep_default_na": False,
            "na_filter": False,
        }
    try:
        dataset = load_dataset(
            builder,
            data_files=str(source.path),
            split="train",
            cache_dir=str(Path(work_dir) / "hf-datasets"),
            **options,
        )
    except Exception as exc:
        # `datasets` reports an empty file as StopIteration (JSON) or "corresponds to no data".
        if isinstance(exc, StopIteration) or "corresponds to no data" in str(exc):
            raise DatasetInvalid(f"The {role} data has no rows.") from exc
        raise DatasetInvalid(
            f"The uploaded {role} file could not be read as {source.format}: {short_reason(exc)}"
        ) from exc
    missing = [c for c in source.columns if c not in dataset.column_names]
    if missing:
        raise DatasetInvalid(
            f"The {role} file has no column(s) {', '.join(missing)}; "
            f"it has {', '.join(dataset.column_names)}."
        )
    return dataset.select_columns(list(source.columns))


def describe_hub(source: HubData) -> str:
    """How a Hub source was asked for, for error messages."""
    parts = [f"split {_hub_split(source)!r}"]
    if source.config:
        parts.insert(0, f"config {source.config!r}")
    if source.revision:
        parts.append(f"revision {source.revision!r}")
    return f"{source.hub!r} ({', '.join(parts)})"


def _hub_split(source: HubData) -> str:
    return f"{source.split}[:{source.limit}]" if source.limit else source.split


# A full Hub commit id (git sha-1, lowercase hex).
_COMMIT_SHA = re.compile(r"[0-9a-f]{40}")


def resolve_hub_revision(source: HubData, loaded: Dataset) -> str | None:
    """The commit of `source.hub` that `loaded` came from, or None when it cannot be told.

    In order: (1) `datasets` (5.x) caches a Hub dataset's Arrow files under
    `<repo>/<config>/<version>/<commit sha>/`, online and offline alike (offline it reuses the
    latest cached commit, whatever `revision` says), so the folder of the loaded files is the
    truth; (2) the Hugging Face hub cache's `refs/<revision or main>` (or `snapshots/<sha>` for a
    sha pin); (3) when online, the Hub's answer for the revision (`HfApi().dataset_info`).
    """
    for cache_file in loaded.cache_files:
        folder = Path(cache_file["filename"]).parent.name
        if _COMMIT_SHA.fullmatch(folder):
            return folder
    return _hub_cache_revision(source.hub, source.revision) or _hub_api_revision(source)


def _hub_cache_revision(repo: str, revision: str | None) -> str | None:
    from huggingface_hub import constants

    repo_dir = Path(constants.HF_HUB_CACHE) / f"datasets--{repo.replace('/', '--')}"
    wanted = revision or "main"
    if _COMMIT_SHA.fullmatch(wanted):
        return wanted if (repo_dir / "snapshots" / wanted).is_dir() else None
    try:
        sha = (repo_dir / "refs" / wanted).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return sha if _COMMIT_SHA.fullmatch(sha) else None


def _hub_api_revision(source: HubData) -> str | None:
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        return None
    try:
        sha = HfApi().dataset_info(source.hub, revision=source.revision, timeout=30).sha
    except Exception:  # the data is loaded already: an unknown commit is not worth failing for
        return None
    return sha if isinstance(sha, str) else None


def _load_hub(
    source: HubData,
    role: str,
    *,
    sts: bool = False,
    revisions: dict[str, str] | None = None,
    revision_key: str | None = None,
) -> Dataset:
    """Load a Hub split; its resolved commit (resolve_hub_revision) goes into
    `revisions[revision_key or role]` when known."""
    from datasets import Dataset, load_dataset

    try:
        loaded: Any = load_dataset(
            source.hub, source.config, split=_hub_split(source), revision=source.revision
        )
    except Exception as exc:
        raise DatasetUnavailable(
            f"The {role} dataset {describe_hub(source)} could not be loaded from the "
            f"Hugging Face Hub: {short_reason(exc)}"
        ) from exc
    if not isinstance(loaded, Dataset):
        raise DatasetUnavailable(
            f"The {role} dataset {describe_hub(source)} did not load as a single split."
        )
    resolved = resolve_hub_revision(source, loaded)
    pinned = source.revision
    if pinned and _COMMIT_SHA.fullmatch(pinned) and resolved and resolved != pinned:
        # Offline, `datasets` falls back to the latest cached commit whatever the pin says.
        raise DatasetUnavailable(
            f"The {role} dataset {describe_hub(source)} is pinned to commit {pinned}, but the "
            f"data that loaded is from commit {resolved} (a cached copy: the pinned commit "
            "could not be fetched from the Hugging Face Hub)."
        )
    if revisions is not None and resolved is not None:
        revisions[revision_key or role] = resolved
    if source.columns:
        missing = [c for c in source.columns if c not in loaded.column_names]
        if missing:
            raise DatasetInvalid(
                f"The {role} dataset {describe_hub(source)} has no column(s) "
                f"{', '.join(missing)} named in its column mapping "
                f"(columns: {', '.join(loaded.column_names)})."
            )
        return loaded.select_columns(list(source.columns))
    if sts:
        sts_columns = pick_sts_columns(loaded)
        if sts_columns is None:
            raise DatasetInvalid(
                f"The {role} dataset {describe_hub(source)} needs two text columns and a "
                f"numeric score column (columns: {', '.join(loaded.column_names)})."
            )
        return loaded.select_columns(sts_columns)
    columns = pick_hub_columns(loaded)
    if len(columns) < 2:
        raise DatasetInvalid(
            f"The {role} dataset {describe_hub(source)} has no anchor/positive columns and "
            f"fewer than 2 text columns (columns: {', '.join(loaded.column_names)})."
        )
    return loaded.select_columns(columns)


def pick_hub_columns(dataset: Dataset) -> list[str]:
    """`anchor, positive[, negative]` when present, else the first (up to) 3 string columns."""
    names = dataset.column_names
    if HUB_COLUMNS[0] in names and HUB_COLUMNS[1] in names:
        picked = [c for c in HUB_COLUMNS if c in names]
    else:
        picked = [c for c in names if _is_string_feature(dataset.features[c])][:3]
    return picked


def pick_sts_columns(dataset: Dataset) -> list[str] | None:
    """sentence1, sentence2, score when present, else the first two string columns and the first
    numeric column; None when there are not enough of either."""
    names = dataset.column_names
    if all(c in names for c in STS_COLUMNS):
        return list(STS_COLUMNS)
    texts = [c for c in names if _is_string_feature(dataset.features[c])][:2]
    scores = [c for c in names if _is_numeric_feature(dataset.features[c])][:1]
    if len(texts) < 2 or not scores:
        return None
    return [*texts, *scores]


def _is_numeric_feature(feature: Any) -> bool:
    from datasets import Value

    return isinstance(feature, Value) and (
        feature.dtype.startswith(("int", "uint", "float")) or feature.dtype == "double"
    )


def _is_string_feature(feature: Any) -> bool:
    from datasets import Value

    return isinstance(feature, Value) and feature.dtype in ("string", "large_string")


def _check_texts(dataset: Dataset, role: str) -> None:
    if len(dataset) == 0:
        raise DatasetInvalid(f"The {role} data has no rows.")
    for name in dataset.column_names:
        if not _is_string_feature(dataset.features[name]):
            raise DatasetInvalid(f"The {role} data column {name!r} does not hold text.")
        nulls = dataset.data.column(name).null_count
        if nulls:
            raise DatasetInvalid(f"The {role} data column {name!r} has {nulls} empty value(s).")


def _check_sts(dataset: Dataset, role: str) -> Dataset:
    """Texts in the first two columns, finite numeric scores in the third; renamed to
    sentence1, sentence2, score with the score as float64."""
    from datasets import Value

    first, second, score = dataset.column_names
    _check_texts(dataset.select_columns([first, second]), role)
    if not _is_numeric_feature(dataset.features[score]):
        raise DatasetInvalid(f"The {role} data column {score!r} does not hold numbers.")
    nulls = dataset.data.column(score).null_count
    if nulls:
        raise DatasetInvalid(f"The {role} data column {score!r} has {nulls} empty value(s).")
    if (first, second, score) != STS_COLUMNS:
        names = dict(zip((first, second, score), STS_COLUMNS, strict=True))
        dataset = dataset.rename_columns(names)
    dataset = dataset.cast_column("score", Value("float64"))
    values = dataset["score"]
    if not all(math.isfinite(v) for v in values):
        raise DatasetInvalid(f"The {role} data column {score!r} has a value that is not finite.")
    if len(set(values)) < 2:
        raise DatasetInvalid(
            f"The {role} data needs at least 2 pairs with different scores to correlate with."
        )
    return dataset
