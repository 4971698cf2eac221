"""Peak RSS of the real API while it takes the worst uploads we can build within the limits.

Starts ``embedtune api`` on SQLite in a temporary folder (migrated, one API key), measures its
baseline RSS, then uploads each file below while a thread samples the API process's RSS every
20 ms. Prints, per upload: size, status code, error code, seconds, peak RSS and its ratio to the
baseline (and the increase in MB). Default settings, so the limits are the shipped ones
(1 GiB upload, 100,000 characters a text, 4 GiB uncompressed).

    .venv/bin/python bench/upload_memory.py --json-out bench/results/upload-memory.json

``--only valid.parquet valid.jsonl --merge`` re-runs some cases and replaces just their rows in
an existing ``--json-out`` file (the others kept, the re-run noted under ``reruns``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.support.parquet_tamper import understate_footer  # noqa: E402
from tests.support.services import base_env, create_api_key, free_port, python_cli  # noqa: E402

MB = 1024 * 1024
COLUMNS = ("anchor", "positive", "negative")


# --------------------------------------------------------------------------------------------
# The files


def parquet_bomb(path: Path, chars: int = 200_000_000) -> Path:
    """One row of three texts of ``chars`` characters: ~19 KB with zstd."""
    pq.write_table(pa.table({c: [c[0] * chars] for c in COLUMNS}), path, compression="zstd")
    return path


def lying_footer(path: Path) -> Path:
    """The bomb with every declared uncompressed size in its footer rewritten to 100."""
    parquet_bomb(path)
    metadata = pq.ParquetFile(path).metadata
    group = metadata.row_group(0)
    sizes = {group.total_byte_size, *(group.column(j).total_uncompressed_size for j in range(3))}
    understate_footer(path, sizes)
    return path


def dictionary_bomb(path: Path, rows: int = 2_000_000) -> Path:
    """Every row the same three texts of exactly 100,000 characters (valid!), dictionary
    encoded: a few hundred KB that decode to 600 GB."""
    columns = {
        c: pa.DictionaryArray.from_arrays(pa.array([0] * rows, pa.int32()), pa.array([c * 25_000]))
        for c in ("abcd", "efgh", "ijkl")
    }
    table = pa.table(dict(zip(COLUMNS, columns.values(), strict=True)))
    pq.write_table(table, path, compression="zstd")
    return path


def jsonl_one_line(path: Path, size: int = 1_000_000_000) -> Path:
    """One JSON object of ``size`` bytes on a single line."""
    with path.open("wb") as out:
        out.write(b'{"anchor": "')
        chunk = b"z" * MB
        for _ in range(size // MB):
            out.write(chunk)
        out.write(b'", "positive": "p", "negative": "n"}\n')
    return path


def csv_huge_cells(path: Path, chars: int = 50_000_000) -> Path:
    """A header and one record of three quoted cells of ``chars`` characters, many lines each."""
    with path.open("w", encoding="utf-8") as out:
        out.write("anchor,positive,negative\n")
        block = ("w" * 99 + "\n") * 10_000  # 1 MB of 100-character lines
        for i, _ in enumerate(COLUMNS):
            out.write('"')
            for _ in range(chars // len(block)):
                out.write(block)
            out.write('"' + ("," if i < 2 else "\n"))
    return path


def large_valid_parquet(path: Path, rows: int = 1_000_000) -> Path:
    """A valid triplet file near the limits' spirit: 1M rows of ~300-character texts."""
    words = [f"w{i}" for i in range(20_000)]
    writer = None
    for start in range(0, rows, 100_000):
        count = min(100_000, rows - start)
        table = pa.table(
            {
                c: [
                    " ".join(words[(i * (k + 3) + j * 7) % len(words)] for j in range(50))
                    + f" {start + i}"
                    for i in range(count)
                ]
                for k, c in enumerate(COLUMNS)
            }
        )
        writer = writer or pq.ParquetWriter(path, table.schema, compression="zstd")
        writer.write_table(table)
    assert writer is not None
    writer.close()
    return path


def large_valid_jsonl(path: Path, rows: int = 1_000_000) -> Path:
    """The same data as JSON Lines (~1 GB is the upload limit; this is ~300 MB)."""
    table = pq.read_table(large_valid_parquet(path.with_suffix(".parquet"), rows))
    with path.open("w", encoding="utf-8") as out:
        for batch in table.to_batches(100_000):
            for row in batch.to_pylist():
                out.write(json.dumps(row) + "\n")
    return path


CASES: list[tuple[str, str, Callable[[Path], Path]]] = [
    ("parquet zstd bomb: 1 row, 3 x 200M-char texts", "bomb.parquet", parquet_bomb),
    ("parquet bomb, footer understating sizes", "lying.parquet", lying_footer),
    ("parquet dictionary bomb: 2M rows of 100k-char texts", "dict.parquet", dictionary_bomb),
    ("jsonl: a single ~1 GB line", "line.jsonl", jsonl_one_line),
    ("csv: 3 quoted cells of 50M chars", "cells.csv", csv_huge_cells),
    ("parquet valid: 1M rows x 3 texts", "valid.parquet", large_valid_parquet),
    ("jsonl valid: 1M rows x 3 texts", "valid.jsonl", large_valid_jsonl),
]


# --------------------------------------------------------------------------------------------
# Measuring


class PeakRss:
    """Samples a process's RSS (with its children) every ``interval`` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self._process = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        processes = [self._process, *self._process.children(recursive=True)]
        return sum(p.memory_info().rss for p in processes)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self._interval)

    def __enter__(self) -> PeakRss:
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def start_api(folder: Path) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    env = base_env(
        data_dir=str(folder / "data"),
        database_url=f"sqlite:///{folder / 'embedtune.db'}",
    )
    subprocess.run(python_cli("migrate"), env=env, check=True, cwd=REPO_ROOT)
    key = create_api_key(env, "bench")
    port = free_port()
    log = (folder / "api.log").open("wb")
    api = subprocess.Popen(
        python_cli("api", "--port", str(port)), env=env, cwd=REPO_ROOT, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return api, base, {"Authorization": f"Bearer {key}"}
        except httpx.HTTPError:
            time.sleep(0.2)
    api.kill()
    raise RuntimeError((folder / "api.log").read_text())


def upload(base: str, headers: dict[str, str], path: Path) -> httpx.Response:
    with path.open("rb") as fh:
        return httpx.post(
            f"{base}/datasets", headers=headers, files={"file": (path.name, fh)}, timeout=600
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--only", nargs="*", help="file names of the cases to run")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="replace only the rows of the cases run in an existing --json-out file",
    )
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        api, base, headers = start_api(folder)
        try:
            sampler = PeakRss(api.pid)
            time.sleep(1)
            baseline = sampler.rss()
            print(f"API baseline RSS: {baseline / MB:.0f} MB")
            for label, name, build in CASES:
                if args.only and name not in args.only:
                    continue
                path = build(folder / name)
                size = path.stat().st_size
                before = sampler.rss()
                with PeakRss(api.pid) as peak:
                    start = time.monotonic()
                    response = upload(base, headers, path)
                    seconds = time.monotonic() - start
                body = response.json()
                row = {
                    "case": label,
                    "file_bytes": size,
                    "status": response.status_code,
                    "code": body.get("code") or body.get("error", {}).get("code"),
                    "seconds": round(seconds, 2),
                    "rss_before_mb": round(before / MB, 1),
                    "peak_rss_mb": round(peak.peak / MB, 1),
                    "peak_over_baseline_mb": round((peak.peak - baseline) / MB, 1),
                    "peak_ratio_to_baseline": round(peak.peak / baseline, 2),
                    "message": str(body.get("message") or body.get("error", {}).get("message"))[
                        :160
                    ],
                }
                results.append(row)
                print(
                    f"{label:55s} {size / MB:9.1f} MB  {response.status_code} "
                    f"{row['code'] or 'ok':18s} {seconds:6.1f}s  peak {peak.peak / MB:6.0f} MB "
                    f"(+{row['peak_over_baseline_mb']:.0f} MB, x{row['peak_ratio_to_baseline']})"
                )
                path.unlink()
                for extra in folder.glob("*.parquet"):
                    extra.unlink()
        finally:
            api.terminate()
            api.wait(30)
    if args.json_out:
        summary = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "python": platform.python_version(),
            "pyarrow": pa.__version__,
            "baseline_rss_mb": round(baseline / MB, 1),
            "results": results,
        }
        if args.merge and args.json_out.exists():
            summary = merge(json.loads(args.json_out.read_text()), summary)
        args.json_out.write_text(json.dumps(summary, indent=2) + "\n")


def merge(previous: dict[str, Any], rerun: dict[str, Any]) -> dict[str, Any]:
    """``previous`` with the rows of the cases in ``rerun`` replaced, the re-run noted."""
    rows = {row["case"]: row for row in rerun["results"]}
    merged = dict(previous)
    merged["results"] = [rows.pop(row["case"], row) for row in previous["results"]]
    merged["results"] += list(rows.values())
    note = {k: v for k, v in rerun.items() if k != "results"}
    note["cases"] = [row["case"] for row in rerun["results"]]
    merged["reruns"] = [*previous.get("reruns", []), note]
    return merged


if __name__ == "__main__":
    main()
