"""API keys remembered for EMBEDTUNE_AUTH_CACHE_S (app.auth.cache): revoked through this process,
a key stops at once; revoked elsewhere (another API process, another machine, the CLI on
another host: here, a plain UPDATE this process knows nothing about), within the bound."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.auth.cache import keys_seen
from app.auth.models import Team
from app.db import session as db_session
from tests.fast.conftest import client_for

ADMIN = "admin-token-for-the-auth-cache-tests"


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    keys_seen.clear()
    yield
    keys_seen.clear()


def _revoke_behind_the_process_back(key: str) -> None:
    with db_session.get_engine().begin() as conn:
        conn.execute(
            text("UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP WHERE prefix = :p"),
            {"p": key[:11]},
        )


def _unauthorized(r) -> bool:  # type: ignore[no-untyped-def]
    return r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


def test_revoked_through_this_process_a_key_stops_at_once(
    app_with: Callable[..., FastAPI], make_key: Callable[[str], str]
) -> None:
    app = app_with(AUTH_CACHE_S="60", ADMIN_TOKEN=ADMIN)
    key = make_key("a")
    user, admin = client_for(app, key), client_for(app, ADMIN)
    assert user.get("/jobs").status_code == 200  # remembered from now on, for 60 s
    assert admin.post(f"/admin/keys/{key[:11]}/revoke").status_code == 200
    assert _unauthorized(user.get("/jobs"))
    assert _unauthorized(user.get("/datasets"))


def test_revoked_elsewhere_a_key_stops_within_the_bound(
    app_with: Callable[..., FastAPI], make_key: Callable[[str], str]
) -> None:
    app = app_with(AUTH_CACHE_S="0.5")
    key = make_key("a")
    user = client_for(app, key)
    assert user.get("/jobs").status_code == 200
    _revoke_behind_the_process_back(key)
    time.sleep(0.6)  # the bound, passed: no answer may come from memory any more
    assert _unauthorized(user.get("/jobs"))


def test_within_the_bound_the_process_answers_from_memory(
    app_with: Callable[..., FastAPI], make_key: Callable[[str], str]
) -> None:
    # The other side of the bound, with one long enough to leave no doubt: what a deployment
    # accepts in exchange for not asking the database on every request.
    app = app_with(AUTH_CACHE_S="60")
    key, other = make_key("a"), make_key("a")
    user = client_for(app, key)
    assert user.get("/jobs").status_code == 200
    _revoke_behind_the_process_back(key)
    _revoke_behind_the_process_back(other)
    assert user.get("/jobs").status_code == 200
    # A key this process has not seen is looked up: its revocation counts at once.
    assert _unauthorized(client_for(app, other).get("/jobs"))


def test_with_0_every_request_checks_its_key(
    app_with: Callable[..., FastAPI], make_key: Callable[[str], str]
) -> None:
    app = app_with(AUTH_CACHE_S="0")
    key = make_key("a")
    user = client_for(app, key)
    assert user.get("/jobs").status_code == 200
    _revoke_behind_the_process_back(key)
    assert _unauthorized(user.get("/jobs"))


def test_a_lookup_that_began_before_a_revocation_does_not_store_its_answer() -> None:
    team = Team(id="team_1", name="a", limits=None)
    began = keys_seen.generation
    keys_seen.forget(key_id="key_1")  # the revocation commits while the lookup runs
    keys_seen.put("digest", team, "key_1", 60, began)
    assert keys_seen.get("digest") is None
    keys_seen.put("digest", team, "key_1", 60, keys_seen.generation)
    assert keys_seen.get("digest") is not None


def test_a_team_change_through_this_process_forgets_its_keys() -> None:
    keys_seen.put("d1", Team(id="team_1", name="a"), "key_1", 60, keys_seen.generation)
    keys_seen.put("d2", Team(id="team_2", name="b"), "key_2", 60, keys_seen.generation)
    keys_seen.forget(team_id="team_1")
    assert keys_seen.get("d1") is None
    assert keys_seen.get("d2") is not None
