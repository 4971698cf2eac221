"""Loading a DataSource into a `datasets.Dataset` holding only its text columns, in loss order.

Training data has 2 columns (anchor, positive) or 3 (anchor, positive, negative); evaluation and
test data must be triplets, because the TripletEvaluator needs a negative for every anchor. STS
data has two texts and a float score (sentence1, sentence2, score). Without eval data, a seeded
share of the training rows is held out as the eval set (`split_holdout`).

A Hub dataset is a name (rules.names), never a path: the Hub client fetches it into
the Hugging Face cache (`fetch_hub_snapshot`) and `datasets` loads that snapshot folder.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rules.holdout import HOLDOUT_MAX_ROWS as HOLDOUT_MAX_ROWS  # re-exported
from rules.holdout import HOLDOUT_MIN_TRAIN_ROWS as HOLDOUT_MIN_TRAIN_ROWS
from rules.holdout import HOLDOUT_SHARE, held_out_indices
from rules.names import check_config, check_hub_id, check_revision, check_split
from worker.training.errors import DatasetInvalid, DatasetUnavailable
from worker.training.models import short_reason
from worker.training.spec import STS_COLUMNS, DataSource, Holdout, HubData, LocalData

if TYPE_CHECKING:
    from datasets import Dataset

# The `datasets` builder for each uploaded file format.
LOCAL_BUILDERS: dict[str, str] = {"jsonl": "json", "csv": "csv", "parquet": "parquet"}
# Preferred Hub column names, in loss order.
HUB_COLUMNS: tuple[str, ...] = ("anchor", "positive", "negative")
# A Hub dataset's card: fetched first, its `configs:` say which files a configuration reads.
HUB_CARD_FILE = "README.md"
# Where `datasets` writes the Arrow files it builds, inside the run's private work_dir.
ARROW_CACHE = "hf-datasets"

# The hold-out rule lives in rules.holdout (imported by the API's job preflight too).


def load_train_data(
    source: DataSource, work_dir: Path, *, revisions: dict[str, str] | None = None
) -> Dataset:
    """Training data in loss order: anchor, positive, then any number of negatives.

    `revisions` (optional): a Hub source's resolved commit (its snapshot's, see snapshot_commit)
    is stored in it under "train"; the other loaders do the same under their role ("sts" for STS
    data).
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
        dataset = _load_hub(
            source, work_dir, role, sts=True, revisions=revisions, revision_key="sts"
        )
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
        dataset = _load_hub(source, work_dir, role, revisions=revisions)
    else:  # pragma: no cover - the DataSource union is closed
        raise TypeError(f"unknown data source {type(source).__name__}")
    _check_texts(dataset, role)
    return dataset


def split_holdout(train: Dataset, seed: int) -> tuple[Dataset, Dataset | None, Holdout | None]:
    """Hold out a seeded share of `train` as an eval set: (rows to train on, held out, Holdout).

    Held out by anchor (the first column), with the rule of rules.holdout: about
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
            cache_dir=str(Path(work_dir) / ARROW_CACHE),
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


def snapshot_commit(snapshot: Path) -> str | None:
    """The commit a Hugging Face cache snapshot holds: its folder's name (`snapshots/<sha>`),
    or None when that is not a commit sha."""
    return snapshot.name if _COMMIT_SHA.fullmatch(snapshot.name) else None


def _check_hub_names(source: HubData, role: str) -> None:
    """DatasetUnavailable unless the reference's names follow rules.names (the API
    checks them too; a job stored before the rules, or a spec built elsewhere, may not). The
    message does not echo the reference: it may be a path."""
    checks: list[tuple[str, Callable[[str], str], str | None]] = [
        ("Hub id", check_hub_id, source.hub),
        ("config", check_config, source.config),
        ("split", check_split, source.split),
        ("revision", check_revision, source.revision),
    ]
    for what, check, value in checks:
        if value is None:
            continue
        try:
            check(value)
        except ValueError as exc:
            raise DatasetUnavailable(
                f"The {role} dataset was not found or is not accessible: its {what} {exc}."
            ) from None


def _unavailable(source: HubData, role: str, exc: BaseException) -> DatasetUnavailable:
    return DatasetUnavailable(
        f"The {role} dataset {describe_hub(source)} was not found or is not accessible on the "
        f"Hugging Face Hub (or in this worker's Hugging Face cache): {short_reason(exc)}"
    )


def fetch_hub_snapshot(source: HubData, role: str) -> Path:
    """The snapshot folder (`<HF_HUB_CACHE>/datasets--org--name/snapshots/<sha>`) holding what
    loading `source` needs; DatasetUnavailable when the Hub client cannot provide it.

    Only the Hub client resolves `source.hub` (online: the Hub, then the cache; offline with
    HF_HUB_OFFLINE=1: the cache only, so a sha pin missing from the cache is unavailable); a name
    that also exists as a path on the worker means nothing here.

    The download is bounded by the dataset card: the card (README.md) comes first, then, when its
    `configs:` YAML lists the configuration's `data_files` (or `data_dir`), only those files and
    the first configuration's (which `datasets` reads whichever configuration is asked for); the
    whole snapshot only when the card has no `configs:`, or a configuration that needs it names
    no files (then `datasets` infers the files from the whole repository). The second fetch asks
    for the commit the first resolved, so both parts come from one commit.
    """
    from huggingface_hub import snapshot_download

    try:
        card_folder = Path(
            snapshot_download(
                source.hub,
                repo_type="dataset",
                revision=source.revision,
                allow_patterns=[HUB_CARD_FILE],
            )
        )
    except Exception as exc:
        raise _unavailable(source, role, exc) from exc
    patterns = hub_data_patterns(card_folder / HUB_CARD_FILE, source, role)
    commit = snapshot_commit(card_folder)
    try:
        folder = snapshot_download(
            source.hub,
            repo_type="dataset",
            revision=commit or source.revision,
            allow_patterns=None if patterns is None else [HUB_CARD_FILE, *patterns],
        )
    except Exception as exc:
        raise _unavailable(source, role, exc) from exc
    return Path(folder)


def hub_data_patterns(card: Path, source: HubData, role: str) -> list[str] | None:
    """The repository file patterns loading `source` reads, from the card's `configs:`; None for
    "the whole snapshot" (no card, no `configs:`, or a configuration naming no files).

    DatasetInvalid when the configuration asked for (or, without one, a default: the one marked
    `default`, the only one, or the one named "default") is not in the card, or when any
    configuration names files outside the repository (absolute, `~`, `..` or a URL): `datasets`
    would read those from the worker's disk.
    """
    configs = _card_configs(card, source, role)
    if not configs:
        return None
    every = [p for config in configs.values() for p in _config_patterns(config) or ()]
    if not all(_inside_repository(pattern) for pattern in every):
        raise DatasetInvalid(
            f"The {role} dataset {describe_hub(source)} has a card whose `configs:` name data "
            "files outside the dataset repository; it cannot be used."
        )
    name = source.config or _default_config(configs)
    if name is None or name not in configs:
        asked = f"no configuration {name!r}" if name else "several configurations"
        raise DatasetInvalid(
            f"The {role} dataset {describe_hub(source)} has {asked}; name one of "
            f"{', '.join(repr(c) for c in configs)} in `config`."
        )
    patterns: list[str] = []
    for config in dict.fromkeys((next(iter(configs)), name)):
        found = _config_patterns(configs[config])
        if found is None:
            return None
        patterns += found
    return patterns


def _card_configs(card: Path, source: HubData, role: str) -> dict[str, dict[str, Any]]:
    """Configuration name -> its entry of the card's `configs:` list, in card order."""
    from huggingface_hub.repocard import metadata_load

    if not card.is_file():
        return {}
    try:
        metadata = metadata_load(card) or {}
    except Exception as exc:
        raise DatasetInvalid(
            f"The {role} dataset {describe_hub(source)} has a card whose YAML could not be "
            f"read: {short_reason(exc)}"
        ) from exc
    entries = metadata.get("configs")
    if not isinstance(entries, list):
        return {}
    return {
        str(entry.get("config_name", "default")): entry
        for entry in entries
        if isinstance(entry, dict)
    }


def _default_config(configs: dict[str, dict[str, Any]]) -> str | None:
    """The configuration `datasets` loads when none is named (as MetadataConfigs decides)."""
    defaults = [
        name
        for name, entry in configs.items()
        if len(configs) == 1 or name == "default" or entry.get("default")
    ]
    return defaults[0] if len(defaults) == 1 else None


def _config_patterns(entry: dict[str, Any]) -> list[str] | None:
    """The file patterns a `configs:` entry reads: its `data_files` (a pattern, a list, or
    split -> patterns entries), else everything under its `data_dir`; None when it names
    neither."""
    if entry.get("data_files") is not None:
        return list(_strings(entry["data_files"]))
    data_dir = entry.get("data_dir")
    if isinstance(data_dir, str):
        return [data_dir, f"{data_dir.rstrip('/')}/*"]
    return None


def _strings(value: Any) -> Iterator[str]:
    """The patterns in a `data_files` value; a split name is not one."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key != "split":
                yield from _strings(item)
    else:
        yield str(value)


def _inside_repository(pattern: str) -> bool:
    """Whether a card's file pattern stays inside the repository it is relative to."""
    text = pattern.strip().replace("\\", "/")
    if not text or text.startswith(("/", "~")) or ":" in text:
        return False  # absolute, home-relative, a URL (hf://, file://...) or a drive letter
    return ".." not in text.split("/")


def _load_hub(
    source: HubData,
    work_dir: Path,
    role: str,
    *,
    sts: bool = False,
    revisions: dict[str, str] | None = None,
    revision_key: str | None = None,
) -> Dataset:
    """Load a Hub split from the snapshot the Hub client resolved it to (fetch_hub_snapshot);
    the snapshot's commit goes into `revisions[revision_key or role]`."""
    from datasets import Dataset, load_dataset

    _check_hub_names(source, role)
    snapshot = fetch_hub_snapshot(source, role)
    try:
        loaded: Any = load_dataset(
            str(snapshot),
            source.config,
            split=_hub_split(source),
            cache_dir=str(Path(work_dir) / ARROW_CACHE),
        )
    except Exception as exc:
        raise DatasetUnavailable(
            f"The {role} dataset {describe_hub(source)} was found but could not be loaded: "
            f"{short_reason(exc)}"
        ) from exc
    if not isinstance(loaded, Dataset):
        raise DatasetUnavailable(
            f"The {role} dataset {describe_hub(source)} did not load as a single split."
        )
    commit = snapshot_commit(snapshot)
    if revisions is not None and commit is not None:
        revisions[revision_key or role] = commit
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
