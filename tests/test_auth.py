"""Teams and API keys: every endpoint but /health needs a valid key, and a team sees only its
own datasets, jobs, events, metrics and models (another team's are 404, like unknown ids).
Over HTTP against the real API + worker on PostgreSQL and Redis; keys made with the CLI."""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import TINY_MODEL, Stack
from tests.support.services import (
    Process,
    auth_headers,
    create_api_key,
    free_port,
    python_cli,
    upload,
    wait_for_job,
    wait_healthy,
)

ADMIN_TOKEN = "test-admin-" + secrets.token_hex(8)


def _client(stack: Stack, key: str | None) -> httpx.Client:
    return httpx.Client(
        base_url=stack.base_url, timeout=60, headers=auth_headers(key) if key else None
    )


def _assert_401(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"


# An API process remembers a valid key this long (EMBEDTUNE_AUTH_CACHE_S, default): a key
# revoked by another process (the CLI, another API process) stops working within it.
AUTH_CACHE_S = 2.0


def _assert_401_within_the_cache_bound(client: httpx.Client, path: str) -> None:
    revoked = time.monotonic()
    while (r := client.get(path)).status_code == 200:
        assert time.monotonic() - revoked < AUTH_CACHE_S + 1, "still accepted past the bound"
        time.sleep(0.1)
    _assert_401(r)


@pytest.fixture(scope="module")
def other(pg_stack: Stack) -> Iterator[httpx.Client]:
    """A client of a second team."""
    with _client(pg_stack, create_api_key(pg_stack.env, f"other-{secrets.token_hex(4)}")) as c:
        yield c


@pytest.fixture(scope="module")
def owned(pg_stack: Stack, triplet_files: dict[str, Path]) -> dict[str, Any]:
    """A dataset and a succeeded job of the `tests` team (pg_stack's client)."""
    dataset = upload(pg_stack.client, triplet_files["train"], name="auth-train")
    assert dataset.status_code == 201, dataset.text
    r = pg_stack.client.post(
        "/jobs",
        json={
            "name": "auth-owned",
            "base_model": TINY_MODEL,
            "train_dataset": dataset.json()["id"],
            "hyperparameters": {"batch_size": 8, "max_steps": 2},
        },
    )
    assert r.status_code == 202, r.text
    job, _ = wait_for_job(pg_stack.client, r.json()["id"])
    assert job["status"] == "succeeded", job
    return {"dataset": dataset.json(), "job": job}


# --- 401 ------------------------------------------------------------------------------------

PROTECTED = [
    ("GET", "/datasets"),
    ("POST", "/datasets"),
    ("GET", "/datasets/ds_x"),
    ("GET", "/jobs"),
    ("POST", "/jobs"),
    ("GET", "/jobs/job_x"),
    ("POST", "/jobs/job_x/cancel"),
    ("GET", "/jobs/job_x/events"),
    ("GET", "/jobs/job_x/metrics"),
    ("GET", "/jobs/job_x/model"),
]


def test_every_endpoint_but_health_and_docs_needs_a_key(pg_stack: Stack) -> None:
    with _client(pg_stack, None) as anonymous:
        for method, path in PROTECTED:
            r = anonymous.request(method, path, json={} if method == "POST" else None)
            _assert_401(r)
            assert "Authorization: Bearer" in r.json()["error"]["message"], (method, path)
        assert anonymous.get("/health").status_code == 200
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert anonymous.get(path).status_code == 200, path
        schema = anonymous.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["ApiKey"]["description"],
    }
    for path, methods in schema["paths"].items():
        for operation in methods.values():
            if path == "/health":
                assert "security" not in operation
            elif path.startswith(("/jobs", "/datasets")):
                assert operation["security"] == [{"ApiKey": []}], path
                assert "401" in operation["responses"], path


def test_a_wrong_key_is_401(pg_stack: Stack) -> None:
    key = pg_stack.api_key
    assert key is not None
    wrong = [
        "nonsense",
        "et_00000000_" + secrets.token_urlsafe(32),  # well formed, unknown
        key[:-1] + ("A" if key[-1] != "A" else "B"),  # a real prefix, a wrong secret
        key + "x",
    ]
    for candidate in wrong:
        with _client(pg_stack, candidate) as client:
            _assert_401(client.get("/jobs"))
    # Another scheme than Bearer is no key either.
    _assert_401(httpx.get(f"{pg_stack.base_url}/jobs", headers={"Authorization": f"Basic {key}"}))


def test_a_revoked_key_is_401(pg_stack: Stack) -> None:
    team = f"revoke-{secrets.token_hex(4)}"
    first, second = create_api_key(pg_stack.env, team), create_api_key(pg_stack.env, team)
    with _client(pg_stack, first) as client, _client(pg_stack, second) as still_valid:
        assert client.get("/jobs").status_code == 200
        result = subprocess.run(
            python_cli("keys", "revoke", first.split("_")[0] + "_" + first.split("_")[1]),
            env=pg_stack.env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        assert "revoked key_" in result.stdout
        # Revoked by another process (the CLI): this API process stops within its bound.
        _assert_401_within_the_cache_bound(client, "/jobs")
        _assert_401(client.get("/datasets"))
        # The team's other key is untouched.
        assert still_valid.get("/jobs").status_code == 200


def test_cli_keys(pg_stack: Stack) -> None:
    team = f"cli-{secrets.token_hex(4)}"
    made = subprocess.run(
        python_cli("keys", "create", "--team", team),
        env=pg_stack.env,
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("et_") and len(key) > 40 and "\n" not in key
    assert f"created team {team}" in made.stderr
    again = create_api_key(pg_stack.env, team)  # the team exists now: only a key is made
    assert again != key

    listed = subprocess.run(
        python_cli("keys", "list", "--team", team), env=pg_stack.env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    assert key[:11] in listed.stdout and again[:11] in listed.stdout
    assert key not in listed.stdout and again not in listed.stdout

    for bad in (["keys", "revoke", "key_unknown"], ["keys", "create", "--team", "../x"]):
        failed = subprocess.run(python_cli(*bad), env=pg_stack.env, capture_output=True, text=True)
        assert failed.returncode != 0, bad


def test_keys_are_stored_only_as_hashes(pg_stack: Stack) -> None:
    key = create_api_key(pg_stack.env, f"hashed-{secrets.token_hex(4)}")
    with _client(pg_stack, key) as client:
        assert client.get("/datasets").status_code == 200
    url = pg_stack.env["EMBEDTUNE_DATABASE_URL"]
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            row = (
                conn.execute(text("SELECT * FROM api_keys WHERE prefix = :p"), {"p": key[:11]})
                .mappings()
                .one()
            )
    finally:
        engine.dispose()
    assert row["hash"] == hashlib.sha256(key.encode()).hexdigest()
    secret = key.split("_", 2)[2]
    assert all(secret not in str(value) for value in row.values())
    assert row["last_used_at"] is not None and row["revoked_at"] is None


# --- isolation ------------------------------------------------------------------------------


def _same_as_unknown(
    r: httpx.Response, unknown: httpx.Response, unknown_id: str, real_id: str
) -> None:
    """Another team's resource answers exactly as an unknown id does (no existence leak)."""
    assert r.status_code == unknown.status_code, r.text
    assert r.json() == json.loads(unknown.text.replace(unknown_id, real_id))


def test_another_teams_job_is_404_everywhere(
    pg_stack: Stack, other: httpx.Client, owned: dict[str, Any]
) -> None:
    job_id = owned["job"]["id"]
    for method, suffix in [
        ("GET", ""),
        ("GET", "/metrics"),
        ("GET", "/events"),
        ("GET", "/model"),
        ("POST", "/cancel"),
    ]:
        unknown = other.request(method, f"/jobs/job_unknown{suffix}")
        r = other.request(method, f"/jobs/{job_id}{suffix}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
        _same_as_unknown(r, unknown, "job_unknown", job_id)
        # The owner gets it; cancelling it answers 409 (it has succeeded), not 404.
        owner = pg_stack.client.request(method, f"/jobs/{job_id}{suffix}")
        assert owner.status_code == (409 if suffix == "/cancel" else 200), owner.text
    assert pg_stack.client.get(f"/jobs/{job_id}").json()["status"] == "succeeded"
    events = pg_stack.client.get(f"/jobs/{job_id}/events").json()["data"]
    assert "cancel_requested" not in {e["type"] for e in events}


def test_another_teams_dataset_is_404_and_never_listed(
    pg_stack: Stack, other: httpx.Client, owned: dict[str, Any]
) -> None:
    dataset_id, job_id = owned["dataset"]["id"], owned["job"]["id"]
    r = other.get(f"/datasets/{dataset_id}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    _same_as_unknown(r, other.get("/datasets/ds_unknown"), "ds_unknown", dataset_id)
    assert dataset_id not in other.get("/datasets").text
    assert job_id not in other.get("/jobs", params={"limit": 100}).text
    assert job_id not in other.get("/jobs", params={"status": "succeeded"}).text
    # The owner's lists have them.
    assert dataset_id in {d["id"] for d in pg_stack.client.get("/datasets").json()["data"]}
    owner_jobs = pg_stack.client.get("/jobs", params={"limit": 100}).json()["data"]
    assert job_id in {j["id"] for j in owner_jobs}


def test_a_job_cannot_use_another_teams_dataset(other: httpx.Client, owned: dict[str, Any]) -> None:
    dataset_id = owned["dataset"]["id"]
    r = other.post("/jobs", json={"base_model": TINY_MODEL, "train_dataset": dataset_id})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "dataset_not_found"
    assert r.json()["error"]["details"] == {"field": "train_dataset", "dataset": dataset_id}
    unknown = other.post("/jobs", json={"base_model": TINY_MODEL, "train_dataset": "ds_unknown"})
    _same_as_unknown(r, unknown, "ds_unknown", dataset_id)


def test_idempotency_keys_are_per_team(
    pg_stack: Stack, other: httpx.Client, triplet_files: dict[str, Path]
) -> None:
    """The same Idempotency-Key from two teams: two datasets, neither sees the other's."""
    key = f"auth-{secrets.token_hex(8)}"
    ids = []
    for client, path in ((pg_stack.client, triplet_files["train"]), (other, triplet_files["test"])):
        with path.open("rb") as fh:
            r = client.post(
                "/datasets", files={"file": (path.name, fh)}, headers={"Idempotency-Key": key}
            )
        assert r.status_code == 201, r.text
        assert "idempotent-replayed" not in r.headers
        ids.append(r.json()["id"])
    assert ids[0] != ids[1]
    assert other.get(f"/datasets/{ids[0]}").status_code == 404


# --- admin endpoints ------------------------------------------------------------------------


def test_admin_endpoints_are_disabled_without_an_admin_token(pg_stack: Stack) -> None:
    for method, path in (("GET", "/admin/teams"), ("POST", "/admin/teams")):
        r = pg_stack.client.request(method, path, json={"name": "x"})  # a team key is no admin
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "admin_disabled"


@pytest.fixture(scope="module")
def admin_api(pg_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second API process on the same database, with an admin token."""
    port = free_port()
    env = {**pg_stack.env, "EMBEDTUNE_ADMIN_TOKEN": ADMIN_TOKEN}
    log_dir = tmp_path_factory.mktemp("admin-api")
    api = Process("api-admin", python_cli("api", "--port", str(port)), env, log_dir)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", [api])
        yield f"http://127.0.0.1:{port}"
    finally:
        api.stop()


def test_admin_needs_the_admin_token(admin_api: str, pg_stack: Stack) -> None:
    assert pg_stack.api_key is not None
    for headers in ({}, auth_headers("wrong"), auth_headers(pg_stack.api_key)):
        _assert_401(httpx.get(f"{admin_api}/admin/teams", headers=headers))
    # The admin token is not a team key.
    _assert_401(httpx.get(f"{admin_api}/jobs", headers=auth_headers(ADMIN_TOKEN)))


def test_admin_manages_teams_and_keys(admin_api: str, pg_stack: Stack) -> None:
    with httpx.Client(base_url=admin_api, headers=auth_headers(ADMIN_TOKEN), timeout=30) as admin:
        name = f"admin-{secrets.token_hex(4)}"
        r = admin.post("/admin/teams", json={"name": name})
        assert r.status_code == 201, r.text
        team = r.json()
        assert team["name"] == name and team["id"].startswith("team_") and team["limits"] is None
        duplicate = admin.post("/admin/teams", json={"name": name})
        assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == "team_exists"
        assert admin.post("/admin/teams", json={"name": "../etc"}).status_code == 422
        assert name in {t["name"] for t in admin.get("/admin/teams").json()["data"]}

        r = admin.post(f"/admin/teams/{team['id']}/keys")
        assert r.status_code == 201, r.text
        created = r.json()
        key = created["key"]
        assert key.startswith(created["prefix"] + "_") and created["revoked_at"] is None
        assert admin.post("/admin/teams/team_unknown/keys").status_code == 404

        # The key works on any API process of the deployment, and sees only its team.
        with _client(pg_stack, key) as client:
            empty = {"data": [], "has_more": False, "next_cursor": None}
            assert client.get("/datasets").json() == empty
            listed = admin.get(f"/admin/teams/{team['id']}/keys").json()["data"]
            assert [k["id"] for k in listed] == [created["id"]]
            assert "key" not in listed[0] and listed[0]["last_used_at"] is not None

            r = admin.post(f"/admin/keys/{created['id']}/revoke")
            assert r.status_code == 200, r.text
            assert r.json()["revoked_at"] is not None and "key" not in r.json()
            # Revoked through another API process (admin_api): this one stops within its bound.
            _assert_401_within_the_cache_bound(client, "/datasets")
        assert admin.post(f"/admin/keys/{created['id']}/revoke").status_code == 200
        assert admin.post("/admin/keys/key_unknown/revoke").status_code == 404


def test_a_teams_own_limits_apply_to_it_alone(
    admin_api: str, pg_stack: Stack, triplet_files: dict[str, Path]
) -> None:
    with httpx.Client(base_url=admin_api, headers=auth_headers(ADMIN_TOKEN), timeout=30) as admin:
        team = admin.post("/admin/teams", json={"name": f"small-{secrets.token_hex(4)}"}).json()
        key = admin.post(f"/admin/teams/{team['id']}/keys").json()["key"]
        r = admin.put(
            f"/admin/teams/{team['id']}/limits", json={"max_batch_size": 8, "max_active_jobs": 1}
        )
        assert r.status_code == 200, r.text
        assert r.json()["limits"] == {"max_batch_size": 8, "max_active_jobs": 1}
        bad = admin.put(f"/admin/teams/{team['id']}/limits", json={"max_gpus": 2})
        assert bad.status_code == 422
    with _client(pg_stack, key) as small:
        dataset = upload(small, triplet_files["train"]).json()["id"]
        job = {"base_model": TINY_MODEL, "train_dataset": dataset}
        over = small.post("/jobs", json={**job, "hyperparameters": {"batch_size": 9}})
        assert over.status_code == 422, over.text
        assert over.json()["error"]["details"]["field"] == "hyperparameters.batch_size"
        first = small.post(
            "/jobs", json={**job, "hyperparameters": {"batch_size": 8, "max_steps": 500}}
        )
        assert first.status_code == 202, first.text
        second = small.post("/jobs", json={**job, "hyperparameters": {"batch_size": 8}})
        assert second.status_code == 429 and "retry-after" in second.headers
        assert small.post(f"/jobs/{first.json()['id']}/cancel").status_code == 202
    # The server's limits still hold for every other team.
    other_team = upload(pg_stack.client, triplet_files["train"]).json()["id"]
    r = pg_stack.client.post(
        "/jobs",
        json={
            "base_model": TINY_MODEL,
            "train_dataset": other_team,
            "hyperparameters": {"batch_size": 9, "max_steps": 1},
        },
    )
    assert r.status_code == 202, r.text
