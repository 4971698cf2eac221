"""Property-based fuzzing of the whole API with schemathesis, against its own OpenAPI schema.

The schema is loaded from the running API (`/openapi.json` of `pg_stack`: the real `embedtune
api` process on PostgreSQL, with a Celery worker on Redis), and every operation is called with
generated requests, valid and invalid (schemathesis' positive and negative generation modes).
Every response must be:

- no server error (5xx);
- a status code the operation documents;
- a body matching the documented schema for that status (errors: {"error": {code, message,
  details}}), with the documented content type and headers.

Three runs: (1) every operation with a valid credential (a team API key; the admin token for
/admin, which a second API process on the same database has configured), random ids included;
(2) the operations with a path parameter, on resources that exist (a dataset, a succeeded job:
its model download's 200 and cancel's 409; a team and a key), so their 200/201 bodies are
checked too; (3) every operation without a credential or with a made-up bearer token, where all
but /health must answer their documented 401.

Nothing is excluded. POST /datasets, whose multipart body the app parses itself (documented with
openapi_extra), is generated from that form schema like any other body. Team operations run as
their own team, "fuzz", so the jobs and datasets the fuzzer manages to create count against it
alone; its active jobs are cancelled afterwards. Run with -s to see the statuses each operation
answered.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Flaky, Unsatisfiable
from hypothesis.strategies import SearchStrategy
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

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

ADMIN_TOKEN = "fuzz-admin-" + secrets.token_hex(8)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
]
# Bounded and reproducible: the same requests on every run (derandomize), at most 10 requests
# per operation and generation mode (valid requests, then invalid ones).
FUZZ_SETTINGS = settings(
    max_examples=10,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
UNAUTHENTICATED_SETTINGS = settings(FUZZ_SETTINGS, max_examples=3)
EXISTING_SETTINGS = settings(FUZZ_SETTINGS, max_examples=5)


@dataclass(frozen=True)
class Targets:
    """Where each operation is sent and with which credential."""

    api: str
    admin_api: str
    team_key: str

    def for_path(self, path: str) -> tuple[str, dict[str, str]]:
        if path.startswith("/admin"):
            return self.admin_api, auth_headers(ADMIN_TOKEN)
        return self.api, auth_headers(self.team_key)


def _load(base_url: str, *, security_parameters: bool) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict(
        {
            "generation": {
                "deterministic": True,
                # Authenticated run: the test sends the real credential itself. Unauthenticated
                # run: schemathesis makes up bearer tokens (or leaves the header out).
                "with-security-parameters": security_parameters,
            },
        }
    )
    return schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=config)


@pytest.fixture(scope="module")
def fuzz_targets(pg_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Targets]:
    """The API (as team "fuzz") and a second API process on the same database with an admin
    token, for /admin."""
    key = create_api_key(pg_stack.env, "fuzz")
    port = free_port()
    env = {**pg_stack.env, "EMBEDTUNE_ADMIN_TOKEN": ADMIN_TOKEN}
    log_dir = tmp_path_factory.mktemp("fuzz-admin-api")
    admin = Process("api-fuzz-admin", python_cli("api", "--port", str(port)), env, log_dir)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", [admin])
        yield Targets(pg_stack.base_url, f"http://127.0.0.1:{port}", key)
    finally:
        admin.stop()
        _cancel_active_jobs(pg_stack.base_url, key)


def _cancel_active_jobs(base_url: str, key: str) -> None:
    """Leave no fuzz job queued or running for the worker the other tests share."""
    with httpx.Client(base_url=base_url, headers=auth_headers(key), timeout=30) as client:
        for status in ("queued", "running"):
            for job in client.get("/jobs", params={"status": status, "limit": 100}).json()["data"]:
                client.post(f"/jobs/{job['id']}/cancel")


@dataclass(frozen=True)
class Existing:
    """Resources that exist, by path parameter name."""

    path_parameters: dict[str, str]


@pytest.fixture(scope="module")
def existing(
    fuzz_targets: Targets, triplet_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Existing:
    """A dataset and a short job of team "fuzz" (requested by the first fuzz test, so the worker
    trains it meanwhile), and a team of its own with a key, for the admin operations (whose
    fuzzing may revoke the key and change the team's limits)."""
    lines = triplet_files["train"].read_text().splitlines(keepends=True)[:40]
    path = tmp_path_factory.mktemp("fuzz-data") / "train.jsonl"
    path.write_text("".join(lines))
    with httpx.Client(
        base_url=fuzz_targets.api, headers=auth_headers(fuzz_targets.team_key), timeout=60
    ) as client:
        dataset = upload(client, path, name="fuzz")
        assert dataset.status_code == 201, dataset.text
        job = client.post(
            "/jobs",
            json={
                "base_model": TINY_MODEL,
                "train_dataset": dataset.json()["id"],
                "hyperparameters": {"max_steps": 2, "batch_size": 8},
            },
        )
        assert job.status_code == 202, job.text
    with httpx.Client(
        base_url=fuzz_targets.admin_api, headers=auth_headers(ADMIN_TOKEN), timeout=60
    ) as admin:
        team = admin.post("/admin/teams", json={"name": f"fuzz-{secrets.token_hex(4)}"})
        assert team.status_code == 201, team.text
        key = admin.post(f"/admin/teams/{team.json()['id']}/keys")
        assert key.status_code == 201, key.text
    return Existing(
        {
            "dataset_id": dataset.json()["id"],
            "job_id": job.json()["id"],
            "team_id": team.json()["id"],
            "key_id": key.json()["id"],
        }
    )


def _wait_for_job(base_url: str, key: str, job_id: str) -> dict[str, Any]:
    with httpx.Client(base_url=base_url, headers=auth_headers(key), timeout=60) as client:
        job, _ = wait_for_job(client, job_id, timeout=120, poll_s=0.5)
    return job


Call = Callable[[schemathesis.Case], schemathesis.Response]


def _run(
    strategy: SearchStrategy[schemathesis.Case],
    hypothesis_settings: settings,
    call: Call,
    statuses: Counter[int],
) -> None:
    @hypothesis_settings
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        statuses[call(case).status_code] += 1

    run()


def _fuzz(
    schema: schemathesis.BaseSchema,
    modes: list[GenerationMode],
    hypothesis_settings: settings,
    call: Call,
    path_parameters: dict[str, str] | None = None,
) -> int:
    """Run `call` on generated cases of every operation and mode; fail listing every operation
    that failed (each with its first failure: schemathesis prints a curl to reproduce it).

    With `path_parameters`, only the operations whose path parameters it all names, with those
    values (everything else is generated). Returns how many operations ran."""
    failures: list[str] = []
    operations = 0
    statuses: dict[str, Counter[int]] = defaultdict(Counter)
    results = list(schema.get_all_operations())
    # Deletes last: run on existing resources first, they would leave the others only 404s.
    results.sort(key=lambda r: isinstance(r, Ok) and r.ok().method.upper() == "DELETE")
    for result in results:
        if not isinstance(result, Ok):
            failures.append(f"=== an operation the schema cannot describe ===\n{result.err()}")
            continue
        operation = result.ok()
        fixed = None
        if path_parameters is not None:
            names = set(re.findall(r"{(\w+)}", operation.path))
            if not names or not names <= path_parameters.keys():
                continue
            fixed = {name: path_parameters[name] for name in names}
        operations += 1
        for mode in modes:
            label = f"{operation.label} ({mode.value})"
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed)
            try:
                _run(strategy, hypothesis_settings, call, statuses[label])
            except Unsatisfiable:
                # Negative mode of an operation without parameters or body (GET /health, GET
                # /datasets, ...): there is no invalid request to make.
                assert mode is GenerationMode.NEGATIVE, operation.label
            except (AssertionError, BaseExceptionGroup) as exc:  # reported together below
                failures.append(f"=== {operation.label} ({mode.value}) ===\n{exc}")
    for label, counts in statuses.items():  # shown with -s, or -rA
        print(f"{label}: {dict(sorted(counts.items()))}")
    assert not failures, "\n\n".join(failures)
    return operations


def test_api_conforms_to_its_schema(
    pg_stack: Stack, fuzz_targets: Targets, existing: Existing
) -> None:
    """Valid and invalid requests, with a valid credential: no 5xx, only documented statuses,
    bodies, content types and headers."""

    def call(case: schemathesis.Case) -> schemathesis.Response:
        base_url, headers = fuzz_targets.for_path(case.operation.path)
        return case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=60)

    schema = _load(pg_stack.base_url, security_parameters=False)
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    assert _fuzz(schema, modes, FUZZ_SETTINGS, call) >= 17  # every operation


def test_existing_resources_conform_to_the_schema(
    pg_stack: Stack, fuzz_targets: Targets, existing: Existing
) -> None:
    """The operations on one resource, with the id of one that exists (random ids are 404):
    a dataset, a succeeded job (its model download included; cancel answers 409), a team and
    a key. Their 200/201 bodies, content types and headers must match the schema too."""
    job = _wait_for_job(
        pg_stack.base_url, fuzz_targets.team_key, existing.path_parameters["job_id"]
    )
    assert job["status"] == "succeeded", job

    def call(case: schemathesis.Case) -> schemathesis.Response:
        base_url, headers = fuzz_targets.for_path(case.operation.path)
        return case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=60)

    schema = _load(pg_stack.base_url, security_parameters=False)
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    ran = _fuzz(schema, modes, EXISTING_SETTINGS, call, existing.path_parameters)
    assert ran >= 10  # every operation with a path parameter


def _unauthorized(ctx: object, response: schemathesis.Response, case: schemathesis.Case) -> bool:
    # Public: /health always, /metrics unless EMBEDTUNE_METRICS_TOKEN is set (not here).
    if case.operation.path in {"/health", "/metrics"}:
        return True
    assert response.status_code == 401, (
        f"{case.operation.label} without a valid credential answered {response.status_code}, "
        f"not 401: {response.text[:300]}"
    )
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers.get("www-authenticate") == ["Bearer"]
    return True


def test_api_without_a_valid_credential_is_401(pg_stack: Stack, fuzz_targets: Targets) -> None:
    """Every operation but /health, without a credential or with a made-up one: its documented
    401 unauthorized, whatever else the request holds."""

    def call(case: schemathesis.Case) -> schemathesis.Response:
        base_url, _ = fuzz_targets.for_path(case.operation.path)
        # Never the real credential: schemathesis generates the Authorization header (a random
        # bearer token) or leaves it out.
        return case.call_and_validate(
            base_url=base_url, checks=[*CHECKS, _unauthorized], timeout=60
        )

    schema = _load(pg_stack.base_url, security_parameters=True)
    assert _fuzz(schema, [GenerationMode.POSITIVE], UNAUTHENTICATED_SETTINGS, call) >= 17


STATEFUL_SETTINGS = settings(
    max_examples=15,
    stateful_step_count=6,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def test_api_flows_conform_to_the_schema(
    pg_stack: Stack, fuzz_targets: Targets, existing: Existing
) -> None:
    """The stateful phase: sequences of calls that follow the schema's links (the id a create
    returns, fed to the operations on that resource: upload -> get; create job -> get, events,
    metrics, cancel, model; create team -> keys, limits; create key -> revoke), valid and
    invalid data alike, with the same checks on every response."""
    schema = _load(pg_stack.base_url, security_parameters=False)
    assert schema.statistic.transitions.total >= 10  # the links are there and were read

    calls: Counter[tuple[str, int]] = Counter()

    class Flows(schema.as_state_machine()):  # type: ignore[misc]
        def after_call(self, response: schemathesis.Response, case: schemathesis.Case) -> None:
            calls[(case.operation.label, response.status_code)] += 1

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            base_url, headers = fuzz_targets.for_path(case.operation.path)
            return {"base_url": base_url, "headers": headers, "timeout": 60}

        def validate_response(  # type: ignore[override]
            self, response: schemathesis.Response, case: schemathesis.Case, **kwargs: Any
        ) -> None:
            try:
                case.validate_response(response, checks=CHECKS)
            except BaseException as exc:
                failures.append(f"=== {case.operation.label} -> {response.status_code} ===\n{exc}")
                raise

    failures: list[str] = []
    # A real server's state moves on (a team name taken, a job finished), so Hypothesis' replay
    # of a scenario can draw differently and call that flaky. As schemathesis' own engine does,
    # that is no failure by itself: the failures are the checks that failed when they ran,
    # collected above.
    with contextlib.suppress(Flaky):
        Flows.run(settings=STATEFUL_SETTINGS)
    assert not failures, "\n\n".join(failures)
    for (label, status), count in sorted(calls.items()):  # shown with -s
        print(f"{label}: {status} x{count}")
    # Links were followed to resources that exist: a created id answered on its own path.
    followed = {label for (label, status), _ in calls.items() if status < 300 and "{" in label}
    assert followed, calls


# --- what the fuzz found, pinned ------------------------------------------------------------


def test_an_undecodable_json_body_is_422(pg_stack: Stack) -> None:
    """Bytes that are not UTF-8 JSON were FastAPI's undocumented 400 http_error."""
    headers = {"Content-Type": "application/json"}
    r = pg_stack.client.post("/jobs", content=b"\xff\xfe{", headers=headers)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"] == [
        {"field": "body", "location": "body", "message": "There was an error parsing the body"}
    ]


def test_every_error_response_documents_the_error_shape(pg_stack: Stack) -> None:
    """Errors were documented without a body, and 422 as FastAPI's HTTPValidationError (never
    sent); GET /jobs/{id} did not document its 404."""
    spec = pg_stack.client.get("/openapi.json").json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert spec["components"]["schemas"]["ErrorResponse"]["required"] == ["error"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")) and path != "/health":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (
                        method,
                        path,
                        status,
                    )
            if "401" in operation["responses"]:
                assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
    assert "404" in spec["paths"]["/jobs/{job_id}"]["get"]["responses"]
