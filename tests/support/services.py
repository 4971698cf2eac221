"""Start the real API and worker processes for integration tests, and talk to them."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A child process whose output goes to a log file, shown when a test fails."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str],
        log_dir: Path,
        *,
        new_session: bool = False,
    ):
        self.name = name
        self._new_session = new_session
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        # A new session lets a test signal the process and its children as one group.
        self.proc = subprocess.Popen(
            list(argv),
            env=env,
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )

    def log_tail(self, chars: int = 6000) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def discard(self) -> None:
        """Teardown of a test that is over: SIGKILL (its whole group when it has its own
        session), not the seconds a Celery worker's warm shutdown takes. Its job processes die
        with it (the pool's and the ranks' parent-death signal)."""
        if self.proc.poll() is None:
            if self._new_session:
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.kill()
            self.proc.wait()
        self._log.close()

    def stop(self, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def python_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "app.cli", *args]


def create_api_key(env: dict[str, str], team: str) -> str:
    """A new API key of `team` (made if missing), from `embedtune keys create` on `env`'s
    database, as an operator makes one."""
    result = subprocess.run(
        python_cli("keys", "create", "--team", team), env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def auth_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wait_healthy(base_url: str, processes: Sequence[Process], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        for p in processes:
            if p.proc.poll() is not None:
                raise RuntimeError(f"{p.name} exited early:\n{p.log_tail()}")
        try:
            last = httpx.get(f"{base_url}/health", timeout=5)
            if last.status_code == 200:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.3)
    raise RuntimeError(f"API not healthy after {timeout}s: {last}")


def base_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDTUNE_")}
    env.update(
        {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    )
    # The shared stacks see many deliberate 401s from one address (the tests' own), and
    # concurrency tests upload many files at once; the throttle and the upload slots are tested
    # with their own bounds (tests/fast/test_security_http.py, tests/test_security_processes.py).
    env["EMBEDTUNE_AUTH_FAILURES_PER_MINUTE"] = "100000"
    env["EMBEDTUNE_UPLOADS_PER_TEAM"] = "100"
    # Webhook tests reach receivers of their own on loopback (refused by default; the refusal
    # is tested in-process, tests/fast/test_webhooks_api.py), and want deliveries and retries
    # within seconds, not the production backoff.
    env["EMBEDTUNE_WEBHOOK_ALLOW_PRIVATE_URLS"] = "1"
    env["EMBEDTUNE_WEBHOOK_SEND_INTERVAL_S"] = "0.2"
    env["EMBEDTUNE_WEBHOOK_RETRY_BASE_S"] = "0.2"
    env.update({f"EMBEDTUNE_{k.upper()}": v for k, v in settings.items()})
    return env


def upload(client: httpx.Client, path: Path, name: str | None = None) -> httpx.Response:
    with path.open("rb") as fh:
        data = {"name": name} if name else None
        return client.post("/datasets", files={"file": (path.name, fh)}, data=data)


def wait_for_job(
    client: httpx.Client, job_id: str, timeout: float = 300, poll_s: float = 0.05
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Poll until the job is terminal. Returns the final job and every distinct state seen."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        snapshot = {"status": job["status"], "phase": job.get("phase"), "progress": job["progress"]}
        if not seen or seen[-1] != snapshot:
            seen.append(snapshot)
        if job["status"] in {"succeeded", "failed", "cancelled"}:
            return job, seen
        time.sleep(poll_s)
    raise AssertionError(f"job {job_id} not finished after {timeout}s; states seen: {seen[-5:]}")


def extract_archive(content: bytes, dest: Path) -> Path:
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")
    return dest


def wait_for_response(
    url: str, timeout: float = 60, headers: dict[str, str] | None = None
) -> httpx.Response:
    """The first HTTP response from `url`, whatever its status, once the server listens."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=15, headers=headers)
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
