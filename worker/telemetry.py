"""A worker's own Prometheus metrics, served on EMBEDTUNE_WORKER_METRICS_PORT.

Jobs run in forked pool processes (one per job), so the metrics use prometheus-client's
multiprocess mode: `prepare()`, in the main process before the pool forks, points
PROMETHEUS_MULTIPROC_DIR at a fresh folder of this worker's own (an inherited value is replaced:
the API's metrics never mix with a worker's); every job process writes its values there, and
the main process's HTTP server (`serve()`) adds them up at scrape time.

- `embedtune_worker_running_jobs`: jobs running now (a gauge over the live job processes).
- `embedtune_worker_cuda_memory_bytes{device}`: CUDA memory the running jobs' allocator holds
  (sampled every few seconds while a job runs; only once a job has initialised CUDA).
- `embedtune_job_duration_seconds{status}`: from a job's first start to its end (succeeded,
  failed or cancelled), observed by the worker that ended it.
- `embedtune_training_steps_per_second`: optimizer steps per second of an attempt that finished
  training (model loading and evaluations included).
- `embedtune_worker_job_failures_total{error_code}`: jobs this worker failed, by error code.

Without the port setting, nothing is prepared and every function here does nothing.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CUDA_SAMPLE_S = 5.0
DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400, 259200)
THROUGHPUT_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
# The files prometheus-client keeps for a live gauge of one process: `gauge_livesum_<pid>.db`.
_LIVE_FILE = re.compile(r"^gauge_live\w*?_(\d+)\.db$")

# Set in the main process before the pool forks; job processes inherit it.
_folder: Path | None = None


def enabled() -> bool:
    return _folder is not None


def prepare(port: int | None) -> Path | None:
    """Main process, before forking: a fresh multiprocess folder when metrics are served."""
    global _folder
    if port is None:
        return None
    _folder = Path(tempfile.mkdtemp(prefix="embedtune-worker-metrics-"))
    os.environ[MULTIPROC_ENV] = str(_folder)
    # prometheus-client chooses how values are stored when it is imported: choose again, in
    # case something imported it before the folder was set.
    from prometheus_client import values

    values.ValueClass = values.get_value_class()
    return _folder


def serve(port: int) -> None:
    """Main process: serve the job processes' metrics on `port` (all interfaces)."""
    from prometheus_client import CollectorRegistry, start_http_server

    assert _folder is not None, "prepare() first"
    registry = CollectorRegistry()
    registry.register(_JobProcesses(_folder))
    start_http_server(port, registry=registry)
    log.info("worker metrics on port %d", port)


def cleanup() -> None:
    """Main process, at shutdown: remove the multiprocess folder."""
    if _folder is not None:
        shutil.rmtree(_folder, ignore_errors=True)


class _JobProcesses:
    """The multiprocess folder's metrics, less the live gauges of job processes that are gone
    (a job process killed outright cannot remove its own)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def collect(self) -> Iterator[Any]:
        from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

        for path in self.folder.iterdir():
            match = _LIVE_FILE.match(path.name)
            if match and not _alive(int(match.group(1))):
                mark_process_dead(int(match.group(1)), str(self.folder))
        yield from MultiProcessCollector(None, str(self.folder)).collect()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class _Metrics:
    running: Any
    cuda_memory: Any
    duration: Any
    throughput: Any
    failures: Any


@lru_cache
def _metrics() -> _Metrics:
    # Made on first use, in a job process: after prepare() chose multiprocess values.
    from prometheus_client import Counter, Gauge, Histogram

    return _Metrics(
        running=Gauge(
            "embedtune_worker_running_jobs",
            "Jobs this worker is running now.",
            registry=None,
            multiprocess_mode="livesum",
        ),
        cuda_memory=Gauge(
            "embedtune_worker_cuda_memory_bytes",
            "CUDA memory held by the running jobs' allocator (torch.cuda.memory_reserved).",
            ["device"],
            registry=None,
            multiprocess_mode="livesum",
        ),
        duration=Histogram(
            "embedtune_job_duration_seconds",
            "Seconds from a job's first start to its end, by final status.",
            ["status"],
            buckets=DURATION_BUCKETS,
            registry=None,
        ),
        throughput=Histogram(
            "embedtune_training_steps_per_second",
            "Optimizer steps per second of an attempt that finished training.",
            buckets=THROUGHPUT_BUCKETS,
            registry=None,
        ),
        failures=Counter(
            "embedtune_worker_job_failures",
            "Jobs this worker failed, by error code.",
            ["error_code"],
            registry=None,
        ),
    )


@contextmanager
def running_job() -> Iterator[None]:
    """Count a job as running while the block runs, sampling its CUDA memory meanwhile."""
    if not enabled():
        yield
        return
    metrics = _metrics()
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_cuda, args=(metrics, stop), daemon=True)
    metrics.running.inc()
    sampler.start()
    try:
        yield
    finally:
        stop.set()
        sampler.join(timeout=CUDA_SAMPLE_S * 2)
        metrics.running.dec()
        for sample in metrics.cuda_memory.collect()[0].samples:
            metrics.cuda_memory.labels(**sample.labels).set(0)


def _sample_cuda(metrics: _Metrics, stop: threading.Event) -> None:
    # Untouched unless the job itself has initialised CUDA: asking earlier would initialise it.
    while not stop.wait(CUDA_SAMPLE_S):
        torch = sys.modules.get("torch")
        try:
            if torch is None or not torch.cuda.is_initialized():
                continue
            for index in range(torch.cuda.device_count()):
                reserved = torch.cuda.memory_reserved(index)
                metrics.cuda_memory.labels(device=f"cuda:{index}").set(reserved)
        except Exception:
            log.debug("could not read CUDA memory", exc_info=True)


def training_finished(steps: int, seconds: float) -> None:
    """An attempt trained `steps` optimizer steps in `seconds`."""
    if enabled() and steps > 0 and seconds > 0:
        _metrics().throughput.observe(steps / seconds)


def job_ended(status: str, duration_s: float | None, error_code: str | None) -> None:
    """This worker ended a job with `status` (and `error_code` when it failed)."""
    if not enabled():
        return
    metrics = _metrics()
    if duration_s is not None:
        metrics.duration.labels(status=status).observe(max(duration_s, 0.0))
    if status == "failed":
        metrics.failures.labels(error_code=error_code or "unknown").inc()
