"""GET /metrics with several API processes (`embedtune api --workers 2`, which gives them a
shared PROMETHEUS_MULTIPROC_DIR in the data dir when none is set): whichever process answers a
scrape reports every process's requests.
(The in-process tests of /metrics are in tests/fast/test_metrics.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.services import Process, base_env, free_port, python_cli, wait_healthy


def refused_jobs_requests(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = {"method": "GET", "route": "/jobs", "status": "401"}
            if s.name == "embedtune_http_requests_total" and s.labels == labels:
                return s.value
    return 0


def test_several_api_processes_report_the_sum_of_their_requests(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "prometheus-multiproc"
    folder.mkdir(parents=True)
    (folder / "stale_123.db").write_bytes(b"left by an earlier run")  # wiped at start
    env = base_env(
        data_dir=str(tmp_path / "data"),
        broker_url=f"filesystem://{tmp_path / 'broker'}",
        queue="metrics-multiprocess",
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    subprocess.run(python_cli("migrate"), env=env, check=True, capture_output=True)
    port = free_port()
    api = Process("api-2", python_cli("api", "--port", str(port), "--workers", "2"), env, tmp_path)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", [api])
        # Fresh connections, so the kernel spreads them over both processes.
        for _ in range(30):
            assert httpx.get(f"http://127.0.0.1:{port}/jobs").status_code == 401
        assert not (folder / "stale_123.db").exists()
        files = {p.name.rsplit("_", 1)[-1] for p in folder.glob("*.db")}
        assert len(files) >= 1
        for _ in range(4):
            scraped = httpx.get(f"http://127.0.0.1:{port}/metrics")
            assert scraped.status_code == 200
            assert refused_jobs_requests(scraped.text) == 30, api.log_tail()
    finally:
        api.stop()
