"""How long a job waits for an idle, warm worker, and where a small job's time goes.

Starts the real service as production runs it, on PostgreSQL and Redis: `embedtune migrate`,
`embedtune api` and `embedtune worker` as separate processes on a fresh database and a queue of
their own. A tiny model (tests/support/tiny_model.py) and 200 real SNLI triplets are uploaded;
then `--jobs` jobs are created one after the other, each once the previous one has finished (so
the worker is idle and warm, as the goal states: `--idle-s` after the previous one finished), and
for each the bench records:

- `created_at` -> `started_at` (the goal: at most 0.5 s on an idle warm worker);
- the job's own `timings` and `throughput` when the API reports them;
- POST /jobs -> the poll that sees `succeeded` (what the user waits, polling every 50 ms).

The baseline in the same run is the time the same API takes to answer GET /jobs/{id} (one
round trip): the start latency is reported as a multiple of it too.

    python bench/job_start.py --jobs 10
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.services import (  # noqa: E402
    Process,
    auth_headers,
    base_env,
    create_api_key,
    free_port,
    python_cli,
    upload,
    wait_healthy,
)
from tests.support.tiny_model import SNLI_TRIPLETS, build_tiny_model, read_jsonl, write_jsonl  # noqa: E402

ADMIN_URL = os.environ.get(
    "EMBEDTUNE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("EMBEDTUNE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TERMINAL = {"succeeded", "failed", "cancelled"}


def _seconds(later: str, earlier: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def _run(args: argparse.Namespace, work: Path, database_url: str) -> dict[str, Any]:
    models = work / "models"
    build_tiny_model(models / "tiny")
    rows = read_jsonl(SNLI_TRIPLETS, limit=args.rows)
    train = write_jsonl(work / "train.jsonl", rows)
    env = base_env(
        database_url=database_url,
        broker_url=REDIS_URL,
        queue=f"embedtune-bench-{secrets.token_hex(4)}",
        data_dir=str(work / "data"),
        model_dirs=str(models),
    )
    subprocess.run(python_cli("migrate"), env=env, check=True, capture_output=True)
    key = create_api_key(env, "bench")
    port = free_port()
    api = Process("api", python_cli("api", "--port", str(port)), env, work)
    worker = Process("worker", python_cli("worker", *args.worker_args.split()), env, work)
    base_url = f"http://127.0.0.1:{port}"
    results: list[dict[str, Any]] = []
    try:
        wait_healthy(base_url, [api, worker])
        with httpx.Client(base_url=base_url, headers=auth_headers(key), timeout=60) as client:
            dataset = upload(client, train).json()["id"]
            body = {
                "base_model": "tiny",
                "train_dataset": dataset,
                "hyperparameters": {"epochs": 1, "batch_size": 16, "max_steps": args.steps},
            }
            for index in range(args.jobs + 1):  # job 0 warms the worker: not counted
                posted = time.monotonic()
                job = client.post("/jobs", json=body).json()
                while job["status"] not in TERMINAL:
                    time.sleep(0.05)
                    job = client.get(f"/jobs/{job['id']}").json()
                waited = time.monotonic() - posted
                if job["status"] != "succeeded":
                    raise SystemExit(f"job {job['id']} {job['status']}: {job.get('error')}")
                round_trip = time.monotonic()
                client.get(f"/jobs/{job['id']}")
                round_trip = time.monotonic() - round_trip
                # Idle between jobs, as the goal's worker is: a worker replaces a job's process
                # once the job ends (a fresh one per job), which takes it a few seconds.
                time.sleep(args.idle_s)
                if index == 0:
                    continue
                results.append(
                    {
                        "start_latency_s": _seconds(job["started_at"], job["created_at"]),
                        "post_to_succeeded_s": waited,
                        "run_s": _seconds(job["finished_at"], job["started_at"]),
                        "get_round_trip_s": round_trip,
                        "timings": job.get("timings"),
                        "throughput": job.get("throughput"),
                    }
                )
    finally:
        for process in (api, worker):
            process.stop()
    return {"jobs": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--idle-s", type=float, default=5.0)
    parser.add_argument("--worker-args", default="", help="extra `embedtune worker` options")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and its logs")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--tag", default=f"{datetime.now():%Y-%m-%d}-cpu-job-start")
    args = parser.parse_args()

    name = f"embedtune_bench_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    work = Path(tempfile.mkdtemp(prefix="embedtune-bench-"))
    try:
        run = _run(args, work, f"{base}/{name}")
    finally:
        if args.keep:
            print(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    jobs = run["jobs"]
    latency = [j["start_latency_s"] for j in jobs]
    trip = statistics.median(j["get_round_trip_s"] for j in jobs)
    summary = {
        "jobs": len(jobs),
        "start_latency_median_s": statistics.median(latency),
        "start_latency_max_s": max(latency),
        "goal_s": 0.5,
        "get_round_trip_median_s": trip,
        "start_latency_median_in_round_trips": statistics.median(latency) / trip,
        "post_to_succeeded_median_s": statistics.median(j["post_to_succeeded_s"] for j in jobs),
        "run_median_s": statistics.median(j["run_s"] for j in jobs),
    }
    lines = [f"{len(jobs)} jobs of {args.steps} steps, one after the other, worker idle and warm"]
    lines += [
        f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}" for k, v in summary.items()
    ]
    if jobs and jobs[-1]["timings"]:
        lines.append(f"  timings of the last job: {json.dumps(jobs[-1]['timings'])}")
        lines.append(f"  throughput of the last job: {jobs[-1]['throughput']}")
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.tag}.json").write_text(json.dumps({"summary": summary, **run}, indent=2))
    (args.out / f"{args.tag}.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
