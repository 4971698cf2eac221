"""Issue 9's classes, in-process: credentials only in the header, authentication before any body
is read, bounded bodies, throttled failures, strict cursors and numbers, per-job event ids, HEAD,
security headers, files at rest, revoke by id or prefix only.

"Not read" is measured, not assumed: those tests drive the ASGI app directly with a body source
that counts the chunks the app pulls from it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.settings import get_settings
from tests.fast.conftest import client_for
from tests.support.tiny_model import SHARED_DATA, read_jsonl

MB = 1024 * 1024
CHUNK = 64 * 1024
TRIPLETS = read_jsonl(SHARED_DATA / "snli_dev_triplets.jsonl", limit=60)


# --- helpers ---------------------------------------------------------------------------------


class CountingBody:
    """An ASGI `receive` serving `total` bytes in CHUNK pieces, counting what was pulled."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.pulled = 0
        self.done = False

    async def __call__(self) -> dict[str, Any]:
        if self.done:
            await anyio.sleep(3600)  # a client that keeps the connection open
        size = min(CHUNK, self.total - self.pulled)
        self.pulled += size
        self.done = self.pulled >= self.total
        return {"type": "http.request", "body": b"x" * size, "more_body": not self.done}


def asgi_request(
    app: FastAPI,
    method: str,
    path: str,
    body: CountingBody,
    *,
    headers: dict[str, str] | None = None,
    client: str = "10.0.0.1",
) -> tuple[int, dict[str, str], bytes]:
    """One request straight into the ASGI app: (status, headers, body)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": (client, 50000),
        "server": ("testserver", 80),
    }
    status = 0
    response_headers: dict[str, str] = {}
    chunks: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            response_headers.update({k.decode(): v.decode() for k, v in message["headers"]})
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    async def run() -> None:
        with anyio.fail_after(30):
            await app(scope, body, send)

    anyio.run(run)
    return status, response_headers, b"".join(chunks)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def jsonl_bytes(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def upload(client: TestClient, rows: list[dict[str, Any]] = TRIPLETS) -> dict[str, Any]:
    r = client.post("/datasets", files={"file": ("train.jsonl", jsonl_bytes(rows))})
    assert r.status_code == 201, r.text
    return r.json()


def create_job(client: TestClient, dataset_id: str, **extra: Any) -> dict[str, Any]:
    body = {"base_model": "tiny", "train_dataset": dataset_id, **extra}
    r = client.post("/jobs", json=body)
    assert r.status_code == 202, r.text
    return r.json()


def assert_error(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code, error
    return error


# --- credentials in the URL -------------------------------------------------------------------

SECRET = "et_0123abcd_" + "S" * 43


@pytest.mark.parametrize("param", ["api_key", "apikey", "token", "access_token", "API_KEY", "key"])
@pytest.mark.parametrize("path", ["/jobs", "/datasets", "/health", "/admin/teams"])
def test_a_key_in_the_query_string_is_refused(client, make_key, param, path) -> None:
    # Even with a valid header: the URL has already leaked the key into logs.
    r = client.get(path, params={param: SECRET}, headers=bearer(make_key("a")))
    error = assert_error(r, 401, "unauthorized")
    assert "Authorization: Bearer" in error["message"] and SECRET not in r.text
    assert r.headers["www-authenticate"] == "Bearer"


# --- authentication before the body; bounded bodies ------------------------------------------


@pytest.mark.parametrize("path", ["/jobs", "/datasets", "/admin/teams", "/jobs/job_x/cancel"])
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("credential", [None, "et_0123abcd_" + "x" * 43, "garbage"])
def test_an_unauthenticated_body_is_never_read(app, path, declared, credential) -> None:
    body = CountingBody(300 * MB)
    headers = {"content-type": "application/json"}
    if declared:
        headers["content-length"] = str(body.total)
    if credential:
        headers |= bearer(credential)
    status, response_headers, content = asgi_request(app, "POST", path, body, headers=headers)
    assert status in {401, 403}, content  # 403: /admin without a configured admin token
    assert body.pulled == 0
    assert response_headers["connection"] == "close"


ADMIN = "admin-" + "t" * 20


@pytest.mark.parametrize("path", ["/jobs", "/admin/teams", "/jobs/job_x/cancel"])
def test_an_oversized_json_body_is_413_before_it_is_read(app_with, make_key, path) -> None:
    app = app_with(ADMIN_TOKEN=ADMIN)
    key = ADMIN if path.startswith("/admin") else make_key("a")
    limit = get_settings().max_json_bytes

    declared = CountingBody(300 * MB)
    headers = {"content-type": "application/json", "content-length": str(declared.total)}
    status, _, content = asgi_request(app, "POST", path, declared, headers=headers | bearer(key))
    assert status == 413 and json.loads(content)["error"]["code"] == "payload_too_large"
    assert declared.pulled == 0

    streamed = CountingBody(300 * MB)
    status, _, content = asgi_request(
        app, "POST", path, streamed, headers={"content-type": "application/json"} | bearer(key)
    )
    assert status == 413 and json.loads(content)["error"]["details"] == {"limit_bytes": limit}
    assert streamed.pulled <= limit + CHUNK  # stopped as soon as it passed the limit


def test_a_body_at_the_limit_is_parsed(app_with, make_key) -> None:
    client = client_for(app_with(MAX_JSON_BYTES="2000"), make_key("a"))
    body = json.dumps({"base_model": "tiny", "train_dataset": "ds_x", "name": "n" * 150})
    padded = body[:-1] + " " * (2000 - len(body)) + "}"
    assert len(padded) == 2000
    headers = {"content-type": "application/json"}
    r = client.post("/jobs", content=padded, headers=headers)
    assert_error(r, 422, "dataset_not_found")  # parsed: the dataset does not exist
    r = client.post("/jobs", content=padded + " ", headers=headers)
    assert_error(r, 413, "payload_too_large")


# --- throttled failures -----------------------------------------------------------------------


@pytest.fixture
def throttled(app_with) -> Callable[[], FastAPI]:
    return lambda: app_with(AUTH_FAILURES_PER_MINUTE="5", ADMIN_TOKEN=ADMIN)


def test_failed_authentication_is_throttled_per_address(throttled, make_key) -> None:
    app = throttled()
    good = make_key("a")

    def get(path: str, key: str | None, client: str = "10.0.0.1") -> tuple[int, dict[str, str]]:
        headers = bearer(key) if key else {}
        status, headers_, _ = asgi_request(app, "GET", path, CountingBody(0), headers=headers,
                                           client=client)
        return status, headers_

    assert get("/jobs", good)[0] == 200
    failures = [None, "wrong", "et_0123abcd_" + "x" * 43, None, "wrong"]
    assert [get("/jobs", key)[0] for key in failures] == [401] * 5
    status, headers = get("/jobs", "wrong")
    assert status == 429 and 1 <= int(headers["retry-after"]) <= 60
    # Every credential from that address waits, the right one too, so guessing stops...
    assert get("/jobs", good)[0] == 429
    assert get("/admin/teams", ADMIN)[0] == 429
    # ...and other addresses are not affected; public paths need no credential.
    assert get("/jobs", good, client="10.0.0.2")[0] == 200
    assert get("/health", None)[0] == 200


def test_admin_token_failures_count_too(throttled) -> None:
    app = throttled()
    client = client_for(app)
    for _ in range(5):
        assert_error(client.get("/admin/teams", headers=bearer("not-the-token")), 401,
                     "unauthorized")
    r = client.get("/admin/teams", headers=bearer(ADMIN))
    assert_error(r, 429, "too_many_auth_failures")
    assert int(r.headers["retry-after"]) >= 1


# --- cursors -----------------------------------------------------------------------------------


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


JOB_ID = "job_" + "a" * 24
BAD_JOB_CURSORS = [
    "garbage!",
    "%%%%",
    "A",  # a length base64 cannot have
    _b64("2026-11-27T10:00:00|" + JOB_ID),  # no timezone
    _b64("2026-11-27T10:00:00+00:00|job_x"),
    _b64("2026-11-27T10:00:00+00:00|" + JOB_ID + "|x"),
    _b64("2026-11-27T10:00:00+00:00"),
    _b64("99999-01-01T00:00:00+00:00|" + JOB_ID),
    _b64("2026-11-27T10:00:00+00:00|" + JOB_ID + "\n"),
    _b64("\u00e9|" + JOB_ID),
    base64.urlsafe_b64encode(b"\xff\xfe|" + JOB_ID.encode()).decode(),
    "AAAA" * 50,
]


@pytest.mark.parametrize("cursor", BAD_JOB_CURSORS)
def test_a_tampered_jobs_cursor_is_422(team_client, cursor) -> None:
    r = team_client("a").get("/jobs", params={"cursor": cursor})
    assert_error(r, 422, "invalid_cursor")


def test_an_oversized_cursor_is_422(team_client) -> None:
    client = team_client("a")
    for path in ("/jobs", "/jobs/job_x/events"):
        r = client.get(path, params={"cursor": "A" * 5000})
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


def test_the_jobs_cursor_pages_and_survives_truncation_checks(team_client) -> None:
    client = team_client("a")
    dataset = upload(client)
    ids = [create_job(client, dataset["id"])["id"] for _ in range(3)]
    first = client.get("/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in first["data"]] == ids[::-1][:2] and first["has_more"]
    cursor = first["next_cursor"]
    second = client.get("/jobs", params={"limit": 2, "cursor": cursor}).json()
    assert [j["id"] for j in second["data"]] == ids[:1] and not second["has_more"]
    for bad in (cursor[:-1], cursor[:-2], cursor[:10], cursor + "A", cursor[:-1] + "*"):
        r = client.get("/jobs", params={"cursor": bad})
        assert r.status_code in {200, 422}, r.text  # a cut that still decodes to a cursor is fine
        if r.status_code == 422:
            assert r.json()["error"]["code"] == "invalid_cursor"


@pytest.mark.parametrize(
    "cursor",
    ["ev_\u00b2", "ev_\u0663", "ev_-1", "ev_1.5", "ev_" + "9" * 30, "ev_1\n", " ev_1", "ev_",
     "ev_0x1", "1", "ev_1 ", "EV_1"],
)
def test_a_tampered_events_cursor_is_422(team_client, cursor) -> None:
    client = team_client("a")
    job = create_job(client, upload(client)["id"])
    r = client.get(f"/jobs/{job['id']}/events", params={"cursor": cursor})
    assert_error(r, 422, "invalid_cursor")


def test_event_ids_count_per_job_and_tell_nothing_of_other_teams(team_client) -> None:
    a, b = team_client("a"), team_client("b")
    first = create_job(a, upload(a)["id"])
    # Team b is busy meanwhile: its events must leave no trace in team a's ids.
    b_dataset = upload(b)["id"]
    for _ in range(3):
        job = create_job(b, b_dataset)
        assert b.post(f"/jobs/{job['id']}/cancel").status_code == 202
    second = create_job(a, upload(a)["id"])
    assert a.post(f"/jobs/{second['id']}/cancel").status_code == 202

    assert [e["id"] for e in a.get(f"/jobs/{first['id']}/events").json()["data"]] == [1]
    page = a.get(f"/jobs/{second['id']}/events", params={"limit": 1}).json()
    assert [(e["id"], e["type"]) for e in page["data"]] == [(1, "queued")]
    assert page["has_more"] and page["next_cursor"] == "ev_1"
    rest = a.get(f"/jobs/{second['id']}/events", params={"cursor": page["next_cursor"]}).json()
    assert [(e["id"], e["type"]) for e in rest["data"]] == [(2, "cancelled")]
    # Polling with the last cursor gives nothing new, and keeps the cursor.
    again = a.get(f"/jobs/{second['id']}/events", params={"cursor": rest["next_cursor"]}).json()
    assert again["data"] == [] and again["next_cursor"] == "ev_2"


# --- strict inputs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hyperparameters", "field"),
    [
        ({"batch_size": "16"}, "hyperparameters.batch_size"),
        ({"epochs": "1"}, "hyperparameters.epochs"),
        ({"max_steps": 2.0}, "hyperparameters.max_steps"),
        ({"max_steps": True}, "hyperparameters.max_steps"),
        ({"learning_rate": "2e-5"}, "hyperparameters.learning_rate"),
        ({"learning_rate": 1e-320}, "hyperparameters.learning_rate"),
        ({"learning_rate": 0}, "hyperparameters.learning_rate"),
        ({"seed": "42"}, "hyperparameters.seed"),
    ],
)
def test_numbers_must_be_numbers_and_sane(team_client, hyperparameters, field) -> None:
    client = team_client("a")
    dataset = upload(client)
    r = client.post(
        "/jobs",
        json={"base_model": "tiny", "train_dataset": dataset["id"],
              "hyperparameters": hyperparameters},
    )
    error = assert_error(r, 422, "validation_error")
    assert field in [d["field"] for d in error["details"]]


def test_nan_and_infinity_are_refused(team_client) -> None:
    client = team_client("a")
    dataset = upload(client)["id"]
    for token in ("NaN", "Infinity", "-Infinity"):
        body = f'{{"base_model": "tiny", "train_dataset": "{dataset}", ' \
               f'"hyperparameters": {{"learning_rate": {token}}}}}'
        r = client.post("/jobs", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, (token, r.text)


def test_a_sane_small_learning_rate_is_accepted(team_client) -> None:
    client = team_client("a")
    job = create_job(client, upload(client)["id"], hyperparameters={"learning_rate": 1e-8})
    assert job["hyperparameters"]["learning_rate"] == 1e-8


@pytest.mark.parametrize("name", ["tiny\n", "org/name\n", "\ntiny", "tiny\r", "org/na me"])
def test_identifiers_are_matched_whole(team_client, name) -> None:
    client = team_client("a")
    r = client.post("/jobs", json={"base_model": name, "train_dataset": upload(client)["id"]})
    error = assert_error(r, 422, "validation_error")
    assert error["details"][0]["field"] == "base_model"


def test_team_names_are_matched_whole(throttled) -> None:
    client = client_for(throttled())
    client.headers.update(bearer(ADMIN))
    for name in ("team\n", "team\r\n", "te am"):
        assert_error(client.post("/admin/teams", json={"name": name}), 422, "validation_error")
    assert client.post("/admin/teams", json={"name": "team"}).status_code == 201


# --- HEAD and headers --------------------------------------------------------------------------


def test_head_works_where_get_does(client, team_client) -> None:
    get = client.get("/health")
    head = client.head("/health")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]
    a = team_client("a")
    assert a.head("/jobs").status_code == 200 and a.head("/jobs").content == b""
    assert a.head("/jobs/job_x").status_code == 404
    assert client.head("/jobs").status_code == 401
    assert a.head("/jobs/job_x/cancel").status_code == 405  # POST only


def test_every_response_says_nosniff_and_pages_have_a_strict_policy(client, team_client) -> None:
    for r in (client.get("/health"), client.get("/jobs"), team_client("a").get("/jobs/x"),
              client.get("/openapi.json")):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    for page in ("/docs", "/redoc"):
        r = client.get(page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert r.headers["x-content-type-options"] == "nosniff"
        parts = r.headers["content-security-policy"].split("; ")
        policy = dict((part.split(" ", 1) + [""])[:2] for part in parts)
        assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
        assert "'unsafe-inline'" not in policy["script-src"]
        # Every inline script of the page is allowed by its hash, and nothing else inline.
        for script in re.findall(r"<script>(.*?)</script>", r.text, re.DOTALL):
            digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in policy["script-src"]


# --- revoke by id or prefix only ---------------------------------------------------------------


def test_revoke_refuses_a_whole_key(throttled, make_key) -> None:
    app = throttled()
    admin = client_for(app)
    admin.headers.update(bearer(ADMIN))
    key = make_key("a")
    r = admin.post(f"/admin/keys/{key}/revoke")
    error = assert_error(r, 422, "key_reference_invalid")
    secret = key.split("_", 2)[2]
    assert secret not in r.text
    user = client_for(app)
    assert user.get("/jobs", headers=bearer(key)).status_code == 200  # not revoked
    prefix = "_".join(key.split("_")[:2])
    assert error["details"] == {"key": prefix}
    assert admin.post(f"/admin/keys/{prefix}/revoke").status_code == 200
    assert user.get("/jobs", headers=bearer(key)).status_code == 401


# --- files at rest -----------------------------------------------------------------------------


def test_stored_datasets_are_the_service_users_alone(team_client, settings_env) -> None:
    client = team_client("a")
    dataset = upload(client)
    data_dir = Path(settings_env["EMBEDTUNE_DATA_DIR"])
    stored = list((data_dir / "datasets").iterdir())
    assert [p.name for p in stored] == [f"{dataset['id']}.jsonl"]
    assert stat.S_IMODE(stored[0].stat().st_mode) == 0o600
    for folder in (data_dir / "datasets", data_dir / "scratch" / "uploads"):
        assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0, folder


# --- uploads per team --------------------------------------------------------------------------


def test_a_team_has_a_bounded_number_of_uploads_at_once() -> None:
    from app.errors import TooManyRequests
    from app.security.slots import upload_slot

    with upload_slot("team_a", 2), upload_slot("team_a", 2):
        with pytest.raises(TooManyRequests) as info, upload_slot("team_a", 2):
            pass
        assert info.value.code == "too_many_uploads" and info.value.headers
        with upload_slot("team_b", 2):  # another team is not affected
            pass
    with upload_slot("team_a", 2), upload_slot("team_a", 2):  # released when they end
        pass


@pytest.fixture(autouse=True)
def _no_leaked_state() -> Iterator[None]:
    yield
    from app.security import slots

    assert slots._in_progress == {}


# --- keys never reach logs ---------------------------------------------------------------------


def test_the_log_filter_masks_keys_tokens_and_tracebacks() -> None:
    import logging

    from app.security.redact import RedactingFilter, Redactor

    key = "et_0123abcd_" + "Zq9-" * 11
    token = "operator-admin-token-123"
    stream_records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            stream_records.append(self.format(record))

    handler = Collect()
    handler.addFilter(RedactingFilter(Redactor([token])))
    log = logging.getLogger("tests.redaction")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning('%s - "%s %s HTTP/1.1" %d', "127.0.0.1", "GET", f"/jobs?api_key={key}", 401)
        log.warning("admin %s used", token)
        log.warning("path /admin/keys/%s/revoke", key)
        try:
            raise RuntimeError(f"bad key {key} with Token={token}")
        except RuntimeError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    text = "\n".join(stream_records)
    assert key.split("_", 2)[2] not in text and token not in text
    assert "et_0123abcd_[REDACTED]" in text  # the public prefix stays, to tell keys apart
    assert "api_key=[REDACTED]" in text and "RuntimeError" in text
