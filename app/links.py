"""OpenAPI links: how the id a create operation returns feeds the operations on that resource.
They document the API's flow for people and client generators, and schemathesis' stateful
phase follows them (tests/test_fuzz.py)."""

from __future__ import annotations

from typing import Any


def _operation_ref(method: str, path: str) -> str:
    # A JSON pointer into `paths`: "/" inside the path is escaped as "~1".
    return f"#/paths/{path.replace('~', '~0').replace('/', '~1')}/{method.lower()}"


def links(parameter: str, targets: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """{"links": ...} for a response whose body's `id` is `parameter` of each target, given as
    name -> (method, path)."""
    return {
        "links": {
            name: {
                "operationRef": _operation_ref(method, path),
                "parameters": {parameter: "$response.body#/id"},
            }
            for name, (method, path) in targets.items()
        }
    }
