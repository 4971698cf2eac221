"""The HTTP side never imports torch; the training pipeline imports no web, DB or Celery code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_api_process_does_not_import_torch() -> None:
    code = (
        "import sys, app.main, app.cli; app.main.create_app(); "
        "heavy = {'torch', 'transformers', 'sentence_transformers', 'datasets'} & set(sys.modules);"
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_training_pipeline_is_pure() -> None:
    forbidden = {"app", "sqlalchemy", "fastapi", "celery", "kombu", "starlette"}
    for path in (REPO / "worker" / "training").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
