# ruff: noqa: F811  (the fast tier's fixtures are imported, then requested by name)
"""Client tests reuse the fast tier's in-process app (tests/fast/conftest.py): a FastAPI app on
a migrated SQLite copy per test, and factories for keys. The client talks to it through a
Starlette TestClient (an httpx.Client) passed as `http`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from embedtune_client import Client, RetryPolicy
from fastapi import FastAPI

from tests.fast.conftest import (  # noqa: F401  (fixtures)
    app,
    app_with,
    client_for,
    make_key,
    migrated_template,
    settings_env,
)

# A folder the API accepts as a base model (a marker file is enough: no job runs here).
FAKE_MODEL = "fake-model"


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    (root / FAKE_MODEL).mkdir(parents=True)
    (root / FAKE_MODEL / "modules.json").write_text("[]")
    return root


@pytest.fixture
def api_app(app_with, model_dir: Path) -> FastAPI:  # type: ignore[no-untyped-def]
    return app_with(MODEL_DIRS=str(model_dir))


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def api(
    api_app: FastAPI,
    make_key: Callable[[str], str],
    sleeps: list[float],
) -> Iterator[Client]:
    """A Client of team `team-a` on the in-process app; sleeps are recorded, not slept."""
    http = client_for(api_app)
    client = Client(
        url="http://testserver",
        api_key=make_key("team-a"),
        http=http,
        retry=RetryPolicy(attempts=3),
        sleep=sleeps.append,
    )
    yield client
    http.close()
