"""A body that is not JSON says where it breaks; a body sent without the JSON content type says
which header is missing."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("body", "line", "column"),
    [
        ('{"base_model": "tiny",\n "train_dataset": }', 2, 19),
        ("{", 1, 2),
        ('{"base_model": "tiny" "x": 1}', 1, 23),
    ],
)
def test_invalid_json_names_line_and_column(team_client, body, line, column) -> None:
    r = team_client("a").post("/jobs", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "validation_error"
    (detail,) = error["details"]
    assert detail["field"] == "body"
    assert (detail["line"], detail["column"]) == (line, column)
    assert "not valid JSON" in detail["message"] and f"line {line}, column {column}" in detail[
        "message"
    ]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_missing_json_content_type_is_named(team_client, content_type) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    r = team_client("a").post(
        "/jobs", content=b'{"base_model": "tiny", "train_dataset": "ds_x"}', headers=headers
    )
    assert r.status_code == 422, r.text
    message = r.json()["error"]["details"][0]["message"]
    assert "Content-Type: application/json" in message
    assert (content_type or "no Content-Type") in message
