"""The layers: the HTTP side never imports torch nor the worker; the training pipeline imports no
web, DB or Celery code; the shared rules import only the standard library.

The import-linter contracts in pyproject.toml state the layers (scripts/test runs them); these
tests run them too, and hold rules/ to the standard library by name, not by a list of packages.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


# Loaded by the requests that need them, never by the API's start: the ML stack never; pyarrow
# (and numpy) with the first upload or job; Jinja2 with the first /ui page; the client package
# with a `datasets`/`jobs` command; boto3 with an s3:// store; the tokenizers and the Hub with a
# job's preflight. Each costs the idle API memory and start time (issue 12: 120 MB, 1.5 s).
LAZY_FOR_THE_API = (
    "torch",
    "transformers",
    "sentence_transformers",
    "datasets",
    "pandas",
    "pyarrow",
    "numpy",
    "jinja2",
    "embedtune_client",
    "boto3",
    "botocore",
    "tokenizers",
    "huggingface_hub",
)


def test_api_process_does_not_import_torch_nor_what_only_some_requests_need() -> None:
    code = (
        "import sys, app.main, app.cli; app.main.create_app(); "
        f"heavy = set({LAZY_FOR_THE_API!r}) & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _imported_modules(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_rules_import_only_the_standard_library() -> None:
    files = sorted((REPO / "rules").rglob("*.py"))
    assert len(files) > 3
    for path in files:
        for name in _imported_modules(path):
            top = name.split(".")[0]
            assert top == "rules" or top in sys.stdlib_module_names, (
                f"{path.relative_to(REPO)} imports {name}"
            )


def test_the_import_contracts_hold() -> None:
    """lint-imports: app never imports worker; worker.training no app, SQLAlchemy or Celery;
    rules no app, worker or third-party package; the client package neither app nor worker."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert " kept, 0 broken" in out.stdout


def test_the_api_image_has_no_worker() -> None:
    """The Dockerfile's api target copies app/ and rules/, never worker/ (and makes no stub)."""
    from tests.test_compose import _instructions, _parse_dockerfile

    _args, stages = _parse_dockerfile()
    instructions = _instructions(stages, "api")
    sources = [
        src.strip("./")
        for keyword, args in instructions
        if keyword in ("COPY", "ADD")
        for src in [a for a in args.split() if not a.startswith("--")][:-1]
    ]
    assert {"app", "rules"} <= set(sources), sources
    assert "worker" not in sources, sources
    runs = " ".join(args for keyword, args in instructions if keyword == "RUN")
    assert "worker/" not in runs and "worker/__init__.py" not in runs, runs
    worker_sources = [
        args for keyword, args in _instructions(stages, "worker") if keyword == "COPY"
    ]
    assert any(args.split()[0].strip("./") == "rules" for args in worker_sources)
