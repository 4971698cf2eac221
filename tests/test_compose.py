"""Deployment files: docker-compose.yml (validated by `docker-compose config`) and the Dockerfile.

These guard what breaks a deployment silently: a service starting before migrations ran or the
bucket exists, workers without a GPU, api and workers tied to one disk again, a worker that can't
be scaled, torch sneaking into the api image, or the worker image missing the CUDA extra.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

SERVICES = {"postgres", "redis", "minio", "minio-setup", "migrate", "api", "worker", "worker-h100"}
APP_SERVICES = ("migrate", "api", "worker", "worker-h100")
WORKERS = ("worker", "worker-h100")


# --------------------------------------------------------------------------- compose helpers


def _compose_env() -> dict[str, str]:
    """The caller's environment minus anything that would change what the file resolves to."""
    prefixes = ("COMPOSE_", "POSTGRES_", "EMBEDTUNE_", "DOCKER_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


@pytest.fixture(scope="module")
def compose_run() -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail(
            "docker-compose is not installed, so docker-compose.yml cannot be validated. "
            "Run scripts/test (it installs it) or `apt-get install -y docker-compose`.",
            pytrace=False,
        )
    result = subprocess.run(
        [exe, "-f", str(COMPOSE_FILE), "--project-directory", str(REPO), "config"],
        cwd=REPO,
        env=_compose_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"`docker-compose config` failed:\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def config(compose_run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    parsed = yaml.safe_load(compose_run.stdout)
    assert isinstance(parsed, dict) and isinstance(parsed.get("services"), dict)
    return parsed


@pytest.fixture(scope="module")
def services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return config["services"]


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool


def _mounts(service: dict[str, Any]) -> list[Mount]:
    """Volumes in either the short (`src:dst:mode`) or long (dict) syntax."""
    out = []
    for vol in service.get("volumes") or []:
        if isinstance(vol, str):
            parts = vol.split(":")
            if len(parts) == 1:
                out.append(Mount("", parts[0], False))
            else:
                mode = parts[2] if len(parts) > 2 else "rw"
                out.append(Mount(parts[0], parts[1], "ro" in mode.split(",")))
        else:
            out.append(Mount(str(vol.get("source", "")), vol["target"], bool(vol.get("read_only"))))
    return out


def _mount_at(service: dict[str, Any], target: str) -> Mount | None:
    return next((m for m in _mounts(service) if m.target == target), None)


def _named_volume(config: dict[str, Any], source: str) -> bool:
    return source in (config.get("volumes") or {})


def _command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command")
    if isinstance(cmd, str):
        return shlex.split(cmd)
    return [str(part) for part in cmd or []]


def _depends_on(service: dict[str, Any]) -> dict[str, str | None]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: None for name in deps}
    return {name: (spec or {}).get("condition") for name, spec in deps.items()}


def _healthcheck_text(service: dict[str, Any]) -> str:
    test = (service.get("healthcheck") or {}).get("test")
    return " ".join(test) if isinstance(test, list) else str(test or "")


# --------------------------------------------------------------------------- compose tests


def test_compose_config_has_no_warnings(compose_run: subprocess.CompletedProcess[str]) -> None:
    # Without a tty docker-compose 1.x drops the "WARNING:" prefix (e.g. "The X variable is not
    # set. Defaulting to a blank string."), so anything on stderr counts.
    messages = [line for line in compose_run.stderr.splitlines() if line.strip()]
    assert not messages, "docker-compose config complained:\n" + "\n".join(messages)


def test_all_services_present(services: dict[str, Any]) -> None:
    assert set(services) >= SERVICES, f"missing services: {SERVICES - set(services)}"


def test_backing_services_have_healthchecks_and_volume(
    services: dict[str, Any], config: dict[str, Any]
) -> None:
    pg, redis = services["postgres"], services["redis"]
    assert str(pg["image"]).startswith("postgres:16")
    assert str(redis["image"]).startswith("redis:7")
    assert "pg_isready" in _healthcheck_text(pg)
    assert _healthcheck_text(redis), "redis needs a healthcheck (api/worker wait for it)"
    pg_data = _mount_at(pg, "/var/lib/postgresql/data")
    assert pg_data and _named_volume(config, pg_data.source), "postgres data needs a named volume"


def test_migrate_is_a_one_off_embedtune_migrate(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert _command(migrate) == ["embedtune", "migrate"]
    # PyYAML reads an unquoted `no` as False; compose itself writes "no".
    assert migrate.get("restart", "no") in ("no", False), "migrate must not be restarted"
    assert _depends_on(migrate).get("postgres") == "service_healthy"
    assert not migrate.get("ports")


@pytest.mark.parametrize("name", ["api", "worker"])
def test_waits_for_successful_migration_and_healthy_backends(
    services: dict[str, Any], name: str
) -> None:
    deps = _depends_on(services[name])
    assert deps.get("migrate") == "service_completed_successfully", (
        f"{name} must start only after migrations succeeded"
    )
    assert deps.get("redis") == "service_healthy"


def test_images_are_built_from_the_dockerfile_with_the_right_targets(
    services: dict[str, Any],
) -> None:
    expected = {"migrate": "api", "api": "api", "worker": "worker"}
    for name, target in expected.items():
        build = services[name].get("build")
        assert isinstance(build, dict), f"{name} must be built from the Dockerfile"
        assert Path(build["context"]).resolve() == REPO, f"{name} build context"
        assert Path(build.get("dockerfile", "Dockerfile")).name == "Dockerfile"
        assert build.get("target") == target, f"{name} must build target {target!r}"
    # migrate runs the very same image as api (same alembic files, no torch).
    assert services["migrate"].get("image") == services["api"].get("image")
    assert services["api"].get("image") != services["worker"].get("image")


def test_api_port_and_healthcheck(services: dict[str, Any]) -> None:
    api = services["api"]
    assert _command(api)[:2] == ["embedtune", "api"]
    targets = set()
    for port in api.get("ports") or []:
        if isinstance(port, dict):
            targets.add(int(port["target"]))
        else:
            targets.add(int(str(port).split(":")[-1].split("/")[0]))
    assert 8000 in targets, "api must publish container port 8000"
    check = _healthcheck_text(api)
    assert "/health" in check and "8000" in check
    assert "curl" not in check, "the api image has python, not curl"


def test_worker_reserves_an_nvidia_gpu(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert _command(worker)[:2] == ["embedtune", "worker"]
    devices = (((worker.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get(
        "devices"
    ) or []
    gpus = [
        d for d in devices if d.get("driver") == "nvidia" and "gpu" in (d.get("capabilities") or [])
    ]
    assert gpus, f"worker needs deploy.resources.reservations.devices nvidia/gpu, got {devices}"
    assert any(d.get("count") in (1, "1", "all") or d.get("device_ids") for d in gpus)


def test_worker_is_scalable(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker, "container_name prevents --scale worker=N"
    assert not worker.get("ports"), "host ports on the worker prevent --scale worker=N"


def test_api_and_workers_share_no_volume_only_the_store(
    services: dict[str, Any], config: dict[str, Any]
) -> None:
    # Workers run on other machines: nothing of theirs may depend on a volume the api has.
    api_volumes = {m.source for m in _mounts(services["api"]) if _named_volume(config, m.source)}
    assert not api_volumes, f"the api needs no named volume (scratch only): {api_volumes}"
    for name in ("api", *WORKERS):
        assert _mount_at(services[name], "/data") is None, f"{name}: /data is its own scratch"
        models = _mount_at(services[name], "/models")
        assert models is not None and models.read_only, f"{name}: /models must be read-only"
    env = services["api"]["environment"]
    assert env["EMBEDTUNE_STORAGE_URL"].startswith("s3://")
    assert env["EMBEDTUNE_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"]


def test_minio_keeps_its_data_and_the_bucket_exists_before_the_app_starts(
    services: dict[str, Any], config: dict[str, Any]
) -> None:
    minio = services["minio"]
    data = _mount_at(minio, "/data")
    assert data and _named_volume(config, data.source), "minio data needs a named volume"
    assert "ready" in _healthcheck_text(minio)
    setup = services["minio-setup"]
    assert setup.get("restart") in ("no", None)
    script = " ".join(setup.get("entrypoint") or [])
    assert "mc mb --ignore-existing" in script
    assert setup["environment"]["BUCKET"] == services["api"]["environment"][
        "EMBEDTUNE_STORAGE_URL"
    ].removeprefix("s3://")
    assert _depends_on(setup) == {"minio": "service_healthy"}
    for name in ("api", *WORKERS):
        assert _depends_on(services[name])["minio-setup"] == "service_completed_successfully"


def test_a_second_worker_kind_for_another_gpu_type(services: dict[str, Any]) -> None:
    gpu_types = services["api"]["environment"]["EMBEDTUNE_GPU_TYPES"].split(",")
    for name in WORKERS:
        cmd = _command(services[name])
        gpu_type = cmd[cmd.index("--gpu-type") + 1]
        gpus = int(cmd[cmd.index("--gpus") + 1])
        assert gpu_type in gpu_types, f"{name}: --gpu-type {gpu_type} not in {gpu_types}"
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert int(devices[0]["count"]) == gpus, f"{name}: reserves other than --gpus {gpus}"
    assert _command(services["worker"]) != _command(services["worker-h100"])
    # The example starts only when asked for (a machine without two h100s would never start it).
    assert services["worker-h100"].get("profiles") == ["h100"]


def test_shared_environment(services: dict[str, Any]) -> None:
    envs = {name: services[name].get("environment") or {} for name in APP_SERVICES}
    keys = (
        "EMBEDTUNE_DATABASE_URL",
        "EMBEDTUNE_BROKER_URL",
        "EMBEDTUNE_DATA_DIR",
        "EMBEDTUNE_MODEL_DIRS",
        "EMBEDTUNE_MAX_UPLOAD_BYTES",
    )
    for key in keys:
        values = {name: env.get(key) for name, env in envs.items()}
        assert None not in values.values(), f"{key} missing in {values}"
        assert len(set(values.values())) == 1, f"{key} differs between services: {values}"
    env = envs["api"]
    assert env["EMBEDTUNE_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in env["EMBEDTUNE_DATABASE_URL"]
    assert env["EMBEDTUNE_BROKER_URL"].startswith("redis://redis:6379")
    assert env["EMBEDTUNE_DATA_DIR"] == "/data"
    assert "/models" in env["EMBEDTUNE_MODEL_DIRS"].split(":")


def test_worker_hf_cache_is_persistent(services: dict[str, Any], config: dict[str, Any]) -> None:
    worker = services["worker"]
    hf_home = (worker.get("environment") or {}).get("HF_HOME")
    assert hf_home, "worker needs HF_HOME so Hub models are downloaded once"
    mount = _mount_at(worker, hf_home)
    assert mount and _named_volume(config, mount.source), "HF_HOME must be on a named volume"


def test_compose_file_shares_env_through_an_anchor() -> None:
    text = COMPOSE_FILE.read_text()
    raw = yaml.safe_load(text)
    assert "x-embedtune-env" in raw
    assert re.search(r"^x-embedtune-env:\s*&(\S+)", text, re.M), "x-embedtune-env needs an anchor"


# --------------------------------------------------------------------------- Dockerfile helpers


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def _logical_lines(text: str) -> list[str]:
    """Instructions with `\\` continuations joined; comment lines dropped (as Docker does)."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip():
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def _parse_dockerfile() -> tuple[dict[str, str], dict[str, Stage]]:
    global_args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in _logical_lines(DOCKERFILE.read_text()):
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args, re.I)
            assert match, f"unparsable FROM: {line}"
            base = re.sub(
                r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), match[1]
            )
            name = match[2] or f"stage{len(stages)}"
            current = stages[name] = Stage(name, base)
        elif current is None:
            if keyword == "ARG" and "=" in args:
                key, _, value = args.partition("=")
                global_args[key.strip()] = value.strip().strip("\"'")
        else:
            current.instructions.append((keyword, args))
    return global_args, stages


def _chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and its ancestors (FROM <stage>), root first."""
    chain = []
    while name in stages:
        chain.append(stages[name])
        name = stages[name].base
    return chain[::-1]


def _instructions(stages: dict[str, Stage], name: str) -> list[tuple[str, str]]:
    return [ins for stage in _chain(stages, name) for ins in stage.instructions]


def _shell_commands(run_args: str) -> list[str]:
    return [c.strip() for c in re.split(r"&&|\|\||;", run_args) if c.strip()]


def _pip_installs(instructions: list[tuple[str, str]]) -> list[str]:
    return [
        cmd
        for kw, args in instructions
        if kw == "RUN"
        for cmd in _shell_commands(args)
        if re.search(r"\bpip3?\s+install\b", cmd)
    ]


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"use the exec (JSON) form: {args}"
    return value


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], dict[str, Stage]]:
    assert DOCKERFILE.is_file()
    return _parse_dockerfile()


@pytest.fixture(scope="module")
def stages(dockerfile: tuple[dict[str, str], dict[str, Stage]]) -> dict[str, Stage]:
    return dockerfile[1]


# --------------------------------------------------------------------------- Dockerfile tests


def test_dockerfile_targets_share_a_python_311_slim_base(stages: dict[str, Stage]) -> None:
    assert {"api", "worker"} <= set(stages)
    api_root, worker_root = _chain(stages, "api")[0], _chain(stages, "worker")[0]
    assert api_root is worker_root, "api and worker should grow from one base stage"
    assert re.match(r"(docker\.io/)?(library/)?python:3\.11[.\d]*-slim", api_root.base), (
        f"base image must be Python 3.11 slim, got {api_root.base}"
    )
    assert len(stages) >= 3, "expected a multi-stage build"


def test_api_image_cannot_contain_torch(stages: dict[str, Stage]) -> None:
    instructions = _instructions(stages, "api")
    installs = _pip_installs(instructions)
    assert installs, "api stage installs nothing?"
    for cmd in installs:
        assert "[worker]" not in cmd, f"api installs the worker extra: {cmd}"
        assert not re.search(r"(^|[\s\"'=])torch\b", cmd), f"api installs torch: {cmd}"
        assert "sentence-transformers" not in cmd and "sentence_transformers" not in cmd
    # ...and the build itself fails should a base dependency ever pull torch in.
    runs = [args for kw, args in instructions if kw == "RUN"]
    assert any("torch" in r and ("find_spec" in r or "torch<0" in r) for r in runs), (
        "api stage should fail the build when torch is present"
    )


def test_worker_image_installs_the_worker_extra(stages: dict[str, Stage]) -> None:
    installs = _pip_installs(_instructions(stages, "worker"))
    assert any(re.search(r"\.\[(\w+,)*worker(,\w+)*\]", cmd) for cmd in installs), (
        f"worker stage must `pip install .[worker]`, found {installs}"
    )
    for cmd in installs:
        assert "--index-url" not in cmd and "download.pytorch.org" not in cmd, (
            f"the CUDA torch wheel comes from PyPI, no extra index: {cmd}"
        )


@pytest.mark.parametrize("target", ["api", "worker"])
def test_pip_installs_use_no_cache_dir(stages: dict[str, Stage], target: str) -> None:
    for cmd in _pip_installs(_instructions(stages, target)):
        assert "--no-cache-dir" in cmd, f"{target}: {cmd}"


@pytest.mark.parametrize("target", ["api", "worker"])
def test_dependency_layer_is_cached_before_source(stages: dict[str, Stage], target: str) -> None:
    instructions = _instructions(stages, target)
    copies = [(i, args) for i, (kw, args) in enumerate(instructions) if kw in ("COPY", "ADD")]
    for _, args in copies:
        srcs = [a for a in args.split() if not a.startswith("--")][:-1]
        assert "." not in srcs and "./" not in srcs, f"{target}: COPY of the whole context: {args}"
    source_copy = min(
        (i for i, args in copies if re.search(r"(^|\s)\.?/?(app|worker)/?(\s|$)", args)),
        default=None,
    )
    assert source_copy is not None, f"{target}: app/ and worker/ are never copied"
    # `pip install .` / `pip install ".[worker]"` without --no-deps: the dependency layer.
    project_install = re.compile(r"[\s\"']\.(\[[\w,]+\])?[\"']?(\s|$)")
    dep_installs = [
        i
        for i, (kw, args) in enumerate(instructions)
        if kw == "RUN"
        for cmd in _pip_installs([(kw, args)])
        if project_install.search(cmd) and "--no-deps" not in cmd
    ]
    assert dep_installs and min(dep_installs) < source_copy, (
        f"{target}: dependencies must be installed before the source is copied"
    )


@pytest.mark.parametrize(
    ("target", "command"),
    [
        ("api", ["embedtune", "api", "--host", "0.0.0.0", "--port", "8000"]),
        ("worker", ["embedtune", "worker"]),
    ],
)
def test_targets_run_as_non_root_with_alembic(
    stages: dict[str, Stage], target: str, command: list[str]
) -> None:
    instructions = _instructions(stages, target)
    users = [args.split(":")[0].strip() for kw, args in instructions if kw == "USER"]
    assert users and users[-1] not in ("root", "0"), f"{target} must run as a non-root user"
    cmds = [args for kw, args in instructions if kw == "CMD"]
    assert cmds and _exec_form(cmds[-1]) == command
    copied = " ".join(args for kw, args in instructions if kw == "COPY")
    assert re.search(r"(^|\s)\.?/?alembic\.ini(\s|$)", copied), f"{target}: no alembic.ini"
    assert re.search(r"(^|\s)\.?/?alembic/?(\s|$)", copied), f"{target}: no alembic/"


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for entry in (".git", ".venv", "data", ".pytest_cache"):
        assert entry in patterns, f".dockerignore should exclude {entry}"
    for needed in ("app", "worker", "alembic", "alembic.ini", "pyproject.toml", "README.md"):
        assert needed not in patterns, f".dockerignore excludes {needed}, which the build copies"
