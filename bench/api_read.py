"""Throughput and tail latency of the API's read path (GET /jobs/{id}, GET /jobs?limit=20) on
PostgreSQL, against a route of the same server that touches no database (/docs), in one run.

Creates a fresh database on PostgreSQL (dropped at the end), migrates it with `embedtune
migrate` (as the product does), adds one team, one API key and `--jobs` jobs in mixed states
(queued ones included, so the queue-position code runs; no worker, so they stay queued), starts
`embedtune api --workers N`, and runs wrk on loopback for each route: `--connections` (64)
connections for throughput, then `--p99-connections` (8) for the latency percentiles. GET
/jobs/{id} cycles through every job id. Prints a table (requests/s, p50/p99, ratio to /docs,
non-2xx) and writes JSON + text.

    .venv/bin/python bench/api_read.py                      # one API process, 10 s per run
    .venv/bin/python bench/api_read.py --workers 2 --name api-read-2-workers

Needs wrk, PostgreSQL (EMBEDTUNE_TEST_POSTGRES_URL, default postgres@127.0.0.1:5432) and Redis
(EMBEDTUNE_TEST_REDIS_URL, default 127.0.0.1:6379) as the tests do. wrk and the API share the
machine: on a small one, wrk's own CPU is part of what is measured (the same for every route).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.support.services import free_port, python_cli  # noqa: E402

POSTGRES_ADMIN_URL = os.environ.get(
    "EMBEDTUNE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("EMBEDTUNE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Job states and how many of every 10 jobs have each: mostly finished, some live.
MIX = (("succeeded", 5), ("failed", 1), ("cancelled", 1), ("running", 1), ("queued", 2))


def _seed(env: dict[str, str], jobs: int) -> tuple[str, list[str]]:
    """One team, one key and `jobs` jobs, written through the service layer's models in the
    bench's own process (the API reads them as any other). Returns (key, job ids)."""
    os.environ.update(env)
    from app.auth import service as auth_service
    from app.db.base import utcnow
    from app.db.session import unit_of_work
    from app.ids import new_id
    from app.jobs.events import EventType, record_event
    from app.jobs.models import Job
    from app.jobs.schemas import JobCreate, JobPreflight, TripletMetrics
    from app.routing import Resources, queue_for
    from app.settings import get_settings

    settings = get_settings()
    payload = JobCreate.model_validate(
        {
            "base_model": "sentence-transformers/all-MiniLM-L6-v2",
            "train_dataset": "ds_" + "0" * 24,
            "eval_dataset": "ds_" + "1" * 24,
            "hyperparameters": {"epochs": 1, "batch_size": 32},
            "metadata": {"pipeline": "ci", "commit": "abc123"},
        }
    )
    states = [state for state, count in MIX for _ in range(count)]
    # The schema's own example: a report of the size a real job stores.
    preflight = JobPreflight.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]
    metric = dict.fromkeys(TripletMetrics.model_fields, 0.81)
    ids: list[str] = []
    with unit_of_work() as session:
        team, _ = auth_service.ensure_team(session, "bench")
        key = auth_service.create_key(session, team).key
        for n in range(jobs):
            state = states[n % len(states)]
            now = utcnow()
            done = state in {"succeeded", "failed", "cancelled"}
            job = Job(
                id=new_id("job"),
                team_id=team.id,
                name=f"bench job {n}",
                status=state,
                base_model=payload.base_model,
                train_dataset=payload.train_dataset,
                eval_dataset=payload.eval_dataset,
                loss=payload.loss,
                hyperparameters=payload.hyperparameters.model_dump(),
                metadata_=dict(payload.metadata),
                card_examples=False,
                preflight=preflight,
                attempt=0 if state == "queued" else 1,
                resources=Resources().as_json(),
                queue=queue_for(Resources(), settings.queue),
                created_at=now,
                started_at=None if state == "queued" else now,
                finished_at=now if done else None,
                dispatched_at=now,
                # A live lease, so the API's sweep does not take "running" jobs back.
                worker="bench-worker" if state == "running" else None,
                lease_expires_at=now + dt.timedelta(days=1) if state == "running" else None,
                progress=None
                if state == "queued"
                else {"step": 40, "total_steps": 82, "epoch": 0.5, "loss": 1.2},
                metrics={"base": metric, "fine_tuned": metric, "evaluated_on": "eval"}
                if state == "succeeded"
                else None,
                model_sha256=secrets.token_hex(32) if state == "succeeded" else None,
                model_size_bytes=87_000_000 if state == "succeeded" else None,
                error_code="training_failed" if state == "failed" else None,
                error_message="CUDA out of memory" if state == "failed" else None,
            )
            session.add(job)
            session.flush()
            record_event(session, job.id, EventType.QUEUED, attempt=0)
            ids.append(job.id)
    return key, ids


def _lua_cycling(paths: list[str], folder: Path) -> Path:
    script = folder / "cycle.lua"
    listed = ",".join(f'"{p}"' for p in paths)
    script.write_text(
        f"local paths = {{{listed}}}\nlocal n = 0\n"
        "request = function()\n  n = n % #paths + 1\n"
        '  return wrk.format("GET", paths[n])\nend\n'
    )
    return script


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of the API process and its children (--workers)."""
    proc = psutil.Process(pid)
    total = 0.0
    for p in (proc, *proc.children(recursive=True)):
        try:
            times = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def run_wrk(
    url: str,
    *,
    connections: int,
    seconds: int,
    threads: int,
    key: str,
    script: Path | None,
    api_pid: int,
) -> dict[str, Any]:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    cmd += ["-H", f"Authorization: Bearer {key}"]
    if script is not None:
        cmd += ["-s", str(script)]
    cpu_before = _cpu_s(api_pid)
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    cpu = _cpu_s(api_pid) - cpu_before
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    pct = {m[0]: _ms(m[1]) for m in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)}
    return {
        "connections": connections,
        "seconds": seconds,
        "requests": total,
        "rps": rps,
        "p50_ms": pct.get("50"),
        "p90_ms": pct.get("90"),
        "p99_ms": pct.get("99"),
        # The API's own CPU per answer: less noisy than req/s on a shared machine.
        "api_cpu_ms_per_request": 1000 * cpu / total if total else None,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else None,
    }


def _create_database() -> tuple[str, str]:
    name = f"embedtune_bench_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return name, f"{url}/{name}"


def _drop_database(name: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the API exited early")
        try:
            if httpx.get(f"{url}/docs", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the API did not answer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration of each run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--p99-connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--workers", type=int, default=1, help="API processes (embedtune api)")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--name", default="api-read", help="results file name (after the date)")
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "bench" / "results")
    parser.add_argument("--keep-running", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    # Stopped with SIGTERM, still stop the API and drop the database (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    db_name, db_url = _create_database()
    work = Path(tempfile.mkdtemp(prefix="bench-api-read-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        # The shipped defaults (not the tests' faster webhook polling, say), but for where.
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDTUNE_")}
        env |= {
            "EMBEDTUNE_DATABASE_URL": db_url,
            "EMBEDTUNE_DATA_DIR": str(work / "data"),
            "EMBEDTUNE_BROKER_URL": REDIS_URL,
            "EMBEDTUNE_QUEUE": f"bench-{secrets.token_hex(4)}",
            "HF_HUB_OFFLINE": "1",
        }
        subprocess.run(python_cli("migrate"), env=env, check=True, capture_output=True)
        key, ids = _seed(env, args.jobs)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = (work / "api.log").open("wb")
        cli = python_cli("api", "--port", str(port), "--workers", str(args.workers))
        proc = subprocess.Popen(cli, env=env, stdout=log, stderr=subprocess.STDOUT)
        _wait_healthy(url, proc)
        headers = {"Authorization": f"Bearer {key}"}
        for path in (f"/jobs/{ids[0]}", "/jobs?limit=20"):  # answers as a client sees them
            r = httpx.get(url + path, headers=headers)
            if r.status_code != 200:
                log_tail = (work / "api.log").read_text()[-3000:]
                sys.exit(f"{path}: {r.status_code} {r.text[:300]}\n{log_tail}")
        cycle = _lua_cycling([f"/jobs/{i}" for i in ids], work)
        routes = {
            "GET /docs (no database)": (f"{url}/docs", None),
            "GET /jobs/{id}": (url, cycle),
            "GET /jobs?limit=20": (f"{url}/jobs?limit=20", None),
        }
        wrk = {"threads": args.threads, "seconds": args.seconds, "key": key, "api_pid": proc.pid}
        run_wrk(url + "/docs", connections=8, **{**wrk, "seconds": 2}, script=None)  # warm-up
        if args.keep_running:
            print(f"serving on {url} (pid {proc.pid}) with key {key}", flush=True)
            time.sleep(args.keep_running)
        results: dict[str, dict[str, Any]] = {}
        for name, (target, script) in routes.items():
            results[name] = {
                "throughput": run_wrk(target, connections=args.connections, script=script, **wrk),
                "latency": run_wrk(target, connections=args.p99_connections, script=script, **wrk),
            }
        baseline = results["GET /docs (no database)"]["throughput"]["rps"]
        lines = [
            f"API processes: {args.workers}; wrk threads: {args.threads}; {args.seconds} s per "
            f"run; {args.jobs} jobs; {os.cpu_count()} CPUs; {platform.python_version()}",
            f"{'route':28} {'req/s @' + str(args.connections):>11} {'ratio':>6} "
            f"{'p50 @' + str(args.p99_connections):>9} {'p99 @' + str(args.p99_connections):>9}"
            f" {'p99 @' + str(args.connections):>9} {'CPU/req':>8} {'non-2xx':>8}",
        ]
        for name, r in results.items():
            t, lat = r["throughput"], r["latency"]
            r["ratio_to_no_db"] = t["rps"] / baseline
            lines.append(
                f"{name:28} {t['rps']:11.0f} {r['ratio_to_no_db']:6.2f} "
                f"{lat['p50_ms']:7.2f}ms {lat['p99_ms']:7.2f}ms {t['p99_ms']:7.1f}ms "
                f"{t['api_cpu_ms_per_request'] or 0:6.2f}ms {t['non_2xx'] + lat['non_2xx']:8d}"
            )
        text = "\n".join(lines)
        print(text)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        stem = args.out_dir / f"{dt.date.today().isoformat()}-cpu-{args.name}"
        stem.with_suffix(".txt").write_text(text + "\n")
        record = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "api_processes": args.workers,
            "wrk_threads": args.threads,
            "jobs": args.jobs,
            "routes": results,
        }
        stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        _drop_database(db_name)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
