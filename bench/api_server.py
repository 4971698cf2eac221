"""The real `embedtune api` on a fresh PostgreSQL database, for bench/api_startup.py and
bench/api_health.py: one database per start (dropped afterwards), Redis as the broker, a
temporary data dir, the shipped settings otherwise."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.support.services import base_env, free_port, python_cli  # noqa: E402

POSTGRES_ADMIN_URL = os.environ.get(
    "EMBEDTUNE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("EMBEDTUNE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# The console script pip installed: what an operator runs.
EMBEDTUNE = str(Path(sys.executable).with_name("embedtune"))


@contextmanager
def fresh_database() -> Iterator[str]:
    name = f"embedtune_bench_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Api:
    proc: subprocess.Popen[bytes]
    url: str
    env: dict[str, str]
    started: float  # time.monotonic() just before the exec

    def vm_rss_mb(self) -> float:
        """VmRSS of the serving process (uvicorn with one worker serves in the process the
        command started; with children, the largest child serves)."""
        pids = [self.proc.pid, *_children(self.proc.pid)]
        return max(_vm_rss_kb(pid) for pid in pids) / 1024

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the command's process has used so far: the start's
        cost without the waits for a CPU that other processes on a shared machine cause."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _vm_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_first_200(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> float:
    """time.monotonic() of the first 200 from `url`/health, polling every 10 ms."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the API exited early ({proc.returncode})")
            try:
                if client.get(f"{url}/health").status_code == 200:
                    return time.monotonic()
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
    raise RuntimeError(f"the API was not healthy after {timeout} s")


# The baseline's commit: the last one unless EMBEDTUNE_BENCH_BASELINE names another (e.g. the
# commit before the change being measured, once that change is committed).
BASELINE_REF = os.environ.get("EMBEDTUNE_BENCH_BASELINE", "HEAD")


def export_head(dest: Path) -> Path:
    """The baseline commit (BASELINE_REF), exported to `dest` (read-only use of git): the code
    to run as the baseline in the same run, on the same venv."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", BASELINE_REF], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


@contextmanager
def running_api(tree: Path = REPO_ROOT, **settings: str) -> Iterator[Api]:
    """`embedtune api` on a fresh, migrated database; stopped and dropped on exit. `tree`: the
    source tree it runs (first on PYTHONPATH), this checkout by default."""
    data_dir = Path(tempfile.mkdtemp(prefix="embedtune-bench-"))
    try:
        with fresh_database() as database_url:
            env = base_env(
                database_url=database_url,
                broker_url=REDIS_URL,
                queue=f"embedtune-bench-{secrets.token_hex(4)}",
                data_dir=str(data_dir),
                **settings,
            )
            env["PYTHONPATH"] = str(tree)
            subprocess.run(
                python_cli("migrate"), env=env, cwd=tree, check=True, capture_output=True
            )
            port = free_port()
            log = (data_dir / "api.log").open("wb")
            started = time.monotonic()
            proc = subprocess.Popen(
                [EMBEDTUNE, "api", "--port", str(port)],
                env=env,
                cwd=tree,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                yield Api(proc, f"http://127.0.0.1:{port}", env, started)
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                log.close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
