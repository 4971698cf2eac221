"""The fast tier: the app in-process (TestClient), on a SQLite database built by the real
migrations, fresh for every test (a copy of one migrated template, which is as good as a
rollback and also undoes what the app itself commits), with factories for teams and keys.
No worker runs: jobs stay queued."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app import migrations
from app.auth import service as auth_service
from app.db import session as db_session
from app.queue import get_celery
from app.settings import get_settings
from app.storage import get_store
from tests.support.services import auth_headers
from tests.support.tiny_model import build_tiny_model

TEMPLATE_DB = "embedtune.db"
FAST_MODEL = "tiny"


def _clear_caches() -> None:
    caches = (get_settings, db_session.get_engine, db_session.get_sessionmaker, get_celery)
    for cached in (*caches, get_store):  # the store follows the settings (default: the data dir)
        cached.cache_clear()


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fast-template") / TEMPLATE_DB
    migrations.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory with the tiny offline BERT sentence-transformer as `tiny`: the API
    checks that a job's base model exists."""
    root = tmp_path_factory.mktemp("fast-models")
    build_tiny_model(root / FAST_MODEL)
    return root


@pytest.fixture
def settings_env(
    tmp_path: Path, migrated_template: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """EMBEDTUNE_* for this test's data dir and database; add more with monkeypatch.setenv
    before using `app`/`client` (settings are read when the app is made)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(migrated_template, data_dir / TEMPLATE_DB)
    env = {
        "EMBEDTUNE_DATA_DIR": str(data_dir),
        "EMBEDTUNE_MODEL_DIRS": str(model_dir),
        "EMBEDTUNE_BROKER_URL": f"filesystem://{tmp_path / 'broker'}",
        "EMBEDTUNE_QUEUE": "fast-tests",
    }
    for name in list(os.environ):
        if name.startswith("EMBEDTUNE_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # No Hub from tests: the libraries read this at import, so their copy is patched too.
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    _clear_caches()
    yield env
    db_session.get_engine().dispose()
    _clear_caches()


@pytest.fixture
def app(settings_env: dict[str, str]):  # type: ignore[no-untyped-def]
    from app.main import create_app

    return create_app()


@pytest.fixture
def app_with(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Factory: an app made under extra EMBEDTUNE_* settings, e.g. app_with(MAX_JSON_BYTES="10")."""
    from app.main import create_app

    def make(**settings: str) -> FastAPI:
        for name, value in settings.items():
            monkeypatch.setenv(f"EMBEDTUNE_{name}", value)
        get_settings.cache_clear()
        get_store.cache_clear()
        return create_app()

    return make


def client_for(app: FastAPI, key: str | None = None) -> TestClient:
    # No `with`: that would run the lifespan and its maintenance thread.
    client = TestClient(app, raise_server_exceptions=False)
    if key:
        client.headers.update(auth_headers(key))
    return client


@pytest.fixture
def client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """A client without credentials (no lifespan: no background maintenance thread)."""
    c = client_for(app)
    yield c
    c.close()


@pytest.fixture
def make_key(settings_env: dict[str, str]) -> Callable[[str], str]:
    """Factory: a new API key of team `name` (the team is made when missing)."""

    def make(name: str) -> str:
        with db_session.unit_of_work() as session:
            team, _ = auth_service.ensure_team(session, name)
            return auth_service.create_key(session, team).key

    return make


@pytest.fixture
def team_client(app, make_key) -> Callable[[str], TestClient]:  # type: ignore[no-untyped-def]
    """Factory: a client authenticated as (a new key of) team `name`."""
    made: list[TestClient] = []

    def make(name: str) -> TestClient:
        c = client_for(app, make_key(name))
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
