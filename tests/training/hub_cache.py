"""Hub datasets laid out in a Hugging Face hub cache, as the Hub client leaves them.

`<HF_HUB_CACHE>/datasets--org--name/refs/<branch>` holds a commit sha, and
`snapshots/<sha>/` the repository's files at that commit: the dataset card (README.md, with the
`configs:` YAML naming each configuration's data files) and the data files. Offline
(HF_HUB_OFFLINE=1, as in these tests), `huggingface_hub.snapshot_download` resolves from exactly
this, so the worker's real flow runs against it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support.tiny_model import write_jsonl

SHA = "0123456789abcdef0123456789abcdef01234567"
OTHER_SHA = "fedcba9876543210fedcba9876543210fedcba98"

Rows = list[dict[str, Any]]


def use_hub_cache(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make `root` the Hugging Face hub cache for this test; returns it."""
    import huggingface_hub.constants

    root.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    return root


def _write_rows(path: Path, rows: Rows) -> None:
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        write_jsonl(path, rows)


def card_text(configs: Mapping[str, Sequence[str]] | None, fmt: str = "parquet") -> str:
    """A dataset card whose `configs:` give config -> one `<config>/<split>-*.<fmt>` pattern per
    split; without configs, a card with no YAML at all."""
    if configs is None:
        return "# A dataset\n"
    lines = ["---", "configs:"]
    for config, splits in configs.items():
        lines += [f"- config_name: {config}", "  data_files:"]
        for split in splits:
            lines += [f"  - split: {split}", f"    path: {config}/{split}-*.{fmt}"]
    return "\n".join([*lines, "---", "", "# A dataset", ""])


def cache_hub_dataset(
    cache: Path,
    repo: str,
    data: Mapping[str, Mapping[str, Rows]],
    *,
    sha: str = SHA,
    refs: Sequence[str] = ("main",),
    fmt: str = "parquet",
    card: str | None = None,
    with_configs: bool = True,
) -> Path:
    """Lay out Hub dataset `repo` at commit `sha`: `data` is config -> split -> rows, written as
    `<config>/<split>-00000.<fmt>` with a card naming them (`card` replaces it; without
    `with_configs`, the card has no `configs:` and files go to `data/<split>-00000.<fmt>`, where
    `datasets` finds them by name). Each of `refs` points at `sha`. Returns the snapshot folder."""
    repo_dir = cache / f"datasets--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / sha
    snapshot.mkdir(parents=True, exist_ok=True)
    for config, splits in data.items():
        for split, rows in splits.items():
            folder = config if with_configs else "data"
            _write_rows(snapshot / folder / f"{split}-00000.{fmt}", rows)
    configs = {config: list(splits) for config, splits in data.items()} if with_configs else None
    (snapshot / "README.md").write_text(card if card is not None else card_text(configs, fmt))
    (repo_dir / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (repo_dir / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / ref).write_text(sha)
    return snapshot
