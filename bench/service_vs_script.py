"""Embedtune as a user runs it (HTTP API + worker, `embedtune local`) against the plain
sentence-transformers tutorial script, in one benchmark run.

Both start from the same freshly initialised MiniLM-L6-shaped model (see pipeline_vs_script.py),
train with MNR loss on the same SNLI triplets (split by premise) with the same hyperparameters and
seed, and score base and fine-tuned model on the held-out triplets.

- The script runs in a fresh Python process, as `python train.py` would: its wall time includes
  the imports (and, on a GPU, the CUDA start-up); the time of the recipe alone is reported too.
- The service is started in its all-in-one local mode (`embedtune local`: SQLite, a folder as the
  broker, one worker) on a free port with a temporary data dir, the fresh model in a folder
  named by EMBEDTUNE_MODEL_DIRS. The train and test files are uploaded with POST /datasets, a job
  is created with POST /jobs (the test set is also its eval set, so it trains on exactly the
  script's rows and evaluates during training as jobs do), and GET /jobs/{id} is polled until it
  finishes. Its wall time runs from POST /jobs to the poll that sees `succeeded`; the job's own
  started_at / finished_at give the time inside the worker (model load, data, training, scoring,
  saving and archiving) and the queue wait before it.

    python bench/service_vs_script.py --tokenizer DIR --data snli_dev_triplets.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from pipeline_vs_script import build_fresh_model, split_by_premise  # noqa: E402

MODEL_NAME = "minilm-fresh"
# Run in a fresh process: the tutorial recipe of pipeline_vs_script.py, timed inside too.
SCRIPT = """
import json, sys, time
sys.path.insert(0, {bench!r})
from pathlib import Path
import sentence_transformers, datasets  # imports are not the recipe's time
from pipeline_vs_script import run_script
start = time.perf_counter()
figures = run_script(Path({model!r}), Path({train!r}), Path({test!r}), Path({out!r}), {hp!r})
figures["recipe_s"] = time.perf_counter() - start
print("FIGURES " + json.dumps(figures))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_script_process(model_dir: Path, train: Path, test: Path, out: Path, hp: dict) -> dict:
    code = SCRIPT.format(
        bench=str(BENCH),
        model=str(model_dir),
        train=str(train),
        test=str(test),
        out=str(out),
        hp=hp,
    )
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-5000:])
        raise SystemExit(f"the script failed with exit code {proc.returncode}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("FIGURES "))
    figures: dict[str, Any] = json.loads(line[len("FIGURES ") :])
    figures["wall_s"] = wall
    return figures


class Service:
    """`embedtune local` on a free port with its own data dir, stopped with SIGTERM."""

    def __init__(self, data_dir: Path, model_dirs: Path, log: Path) -> None:
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # `embedtune local`, as `python -m` from this checkout (not whatever an installed
        # `embedtune` script points at), so the benchmark measures the code next to it.
        command = [sys.executable, "-m", "app.cli", "local", "--port", str(self.port)]
        command += ["--data-dir", str(data_dir)]
        env = {**os.environ, "EMBEDTUNE_MODEL_DIRS": str(model_dirs)}
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.client = httpx.Client(base_url=self.url, timeout=60)
        self.data_dir = data_dir

    def wait_healthy(self, timeout: float) -> float:
        import httpx

        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"the service exited with {self.proc.returncode}; see the log")
            try:
                if self.client.get("/health").status_code == 200:
                    # The local mode's first start made a key and kept it in the data dir.
                    key = (self.data_dir / "api-key").read_text().strip()
                    self.client.headers["Authorization"] = f"Bearer {key}"
                    return time.perf_counter() - start
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"the service was not healthy within {timeout} s")

    def upload(self, path: Path, name: str) -> dict[str, Any]:
        with path.open("rb") as f:
            response = self.client.post(
                "/datasets",
                files={"file": (path.name, f, "application/jsonl")},
                data={"name": name},
            )
        response.raise_for_status()
        return dict(response.json())

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def run_service_job(
    service: Service, train_id: str, test_id: str, hp: dict, timeout: float
) -> dict[str, Any]:
    body = {
        "name": "bench-service-vs-script",
        "base_model": MODEL_NAME,
        "train_dataset": train_id,
        "eval_dataset": test_id,
        "test_dataset": test_id,
        "hyperparameters": hp,
    }
    start = time.perf_counter()
    response = service.client.post("/jobs", json=body)
    if response.status_code != 202:
        raise SystemExit(f"POST /jobs: {response.status_code} {response.text}")
    job_id = response.json()["id"]
    job: dict[str, Any] = {}
    while time.perf_counter() - start < timeout:
        job = service.client.get(f"/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.25)
    wall = time.perf_counter() - start
    if job.get("status") != "succeeded":
        raise SystemExit(f"job {job_id} ended {job.get('status')}: {job.get('error')}")
    series = service.client.get(f"/jobs/{job_id}/metrics").json()
    metrics = job["metrics"]
    return {
        "job_id": job_id,
        "base": metrics["base"]["cosine_accuracy"],
        "fine_tuned": metrics["fine_tuned"]["cosine_accuracy"],
        "steps": (job.get("progress") or {}).get("total_steps"),
        "wall_s": wall,
        "queued_s": seconds_between(job["created_at"], job["started_at"]),
        "worker_s": seconds_between(job["started_at"], job["finished_at"]),
        "eval_points": len(series.get("eval", [])) if isinstance(series, dict) else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", type=Path, required=True, help="all-MiniLM-L6-v2 tokenizer")
    parser.add_argument("--data", type=Path, required=True, help="snli_dev_triplets.jsonl")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--max-rows", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--max-steps", type=int, default=None, help="stop both after this many")
    parser.add_argument("--job-timeout", type=float, default=3600)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()

    import torch

    work = Path(tempfile.mkdtemp(prefix="embedtune-service-bench-"))
    service: Service | None = None
    try:
        rows = [json.loads(line) for line in args.data.open()][: args.max_rows]
        train_rows, test_rows = split_by_premise(rows, test_share=0.2)
        train, test = work / "train.jsonl", work / "test.jsonl"
        for path, subset in ((train, train_rows), (test, test_rows)):
            path.write_text("".join(json.dumps(r) + "\n" for r in subset))
        models = work / "models"
        model_dir = build_fresh_model(args.tokenizer, models / MODEL_NAME, args.layers, 0)
        shutil.rmtree(models / "raw-bert", ignore_errors=True)  # not a model to offer
        hp: dict[str, Any] = {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "warmup_ratio": 0.1,
            "seed": 42,
        }
        if args.max_steps is not None:
            hp["max_steps"] = args.max_steps
        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        print(f"device: {device}; train {len(train_rows)} / test {len(test_rows)} triplets; {hp}")

        service = Service(work / "service", models, work / "service.log")
        startup = service.wait_healthy(timeout=180)
        train_ds = service.upload(train, "bench-train")
        test_ds = service.upload(test, "bench-test")
        print(f"service healthy after {startup:.1f} s; uploaded {train_ds['id']}, {test_ds['id']}")

        script = run_script_process(model_dir, train, test, work / "script", hp)
        print(f"script  {json.dumps(script)}", flush=True)
        job = run_service_job(service, train_ds["id"], test_ds["id"], hp, args.job_timeout)
        print(f"service {json.dumps(job)}", flush=True)
    except BaseException:
        if service is not None and (work / "service.log").exists():
            sys.stderr.write((work / "service.log").read_text()[-5000:])
        raise
    finally:
        if service is not None:
            service.stop()
        shutil.rmtree(work, ignore_errors=True)

    ratio = job["wall_s"] / script["wall_s"]
    summary = {
        "device": device,
        "train_rows": len(train_rows),
        "test_rows": len(test_rows),
        "hyperparameters": hp,
        "layers": args.layers,
        "service_startup_s": startup,
        "script": script,
        "service": job,
        "wall_time_ratio_service_over_script": ratio,
        "worker_time_ratio_over_script_recipe": (
            job["worker_s"] / script["recipe_s"] if job["worker_s"] else None
        ),
    }
    print()
    print(f"{'':8s} {'wall s':>8s} {'base acc':>9s} {'tuned acc':>10s}")
    print(
        f"{'script':8s} {script['wall_s']:8.2f} {script['base']:9.4f} {script['fine_tuned']:10.4f}"
    )
    print(f"{'service':8s} {job['wall_s']:8.2f} {job['base']:9.4f} {job['fine_tuned']:10.4f}")
    print(
        f"script: {script['recipe_s']:.2f} s in the recipe (the rest: interpreter and imports); "
        f"service: {job['queued_s']} s queued, {job['worker_s']} s in the worker "
        f"(started_at -> finished_at)"
    )
    print(f"wall-time ratio service/script: {ratio:.3f}")
    if args.json_out:
        args.json_out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
