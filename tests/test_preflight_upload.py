"""The preflight report over HTTP: computed at upload, stored, returned by POST, GET and list.

Runs against the real API and worker processes (`pg_stack`); the null report of datasets that
existed before revision 0003 is checked on a database migrated in two steps.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.conftest import Stack
from tests.support.services import base_env, python_cli
from tests.support.tiny_model import SHARED_DATA, read_jsonl, write_jsonl

SNLI_TRIPLETS = SHARED_DATA / "snli_dev_triplets.jsonl"


def test_upload_reports_duplicates(pg_stack: Stack, tmp_path: Path) -> None:
    client = pg_stack.client
    # 40 real (anchor, positive) pairs, each once: the triplets repeat pairs with another negative.
    unique = {(r["anchor"], r["positive"]): r for r in read_jsonl(SNLI_TRIPLETS, limit=200)}
    rows = list(unique.values())[:40]
    assert len(rows) == 40
    data = [{"id": i, "query": r["anchor"], "doc": r["positive"]} for i, r in enumerate(rows)]
    data += [data[0], data[5]]  # rows 41 and 42 repeat rows 1 and 6 (ids too: extra columns)
    data += [{"id": 99, "query": "Same text.", "doc": " same TEXT."}]  # row 43
    path = write_jsonl(tmp_path / "pairs.jsonl", data)
    with path.open("rb") as fh:
        r = client.post(
            "/datasets",
            files={"file": ("pairs.jsonl", fh)},
            data={"column_mapping": json.dumps({"anchor": "query", "positive": "doc"})},
        )
    assert r.status_code == 201, r.text
    posted = r.json()
    preflight = posted["preflight"]
    assert preflight["rows"] == posted["rows"] == 43
    assert preflight["checked"] == [
        "duplicate_rows",
        "anchor_equals_positive",
        "duplicate_positives",
    ]
    found = {f["code"]: f for f in preflight["findings"]}
    dup = found["duplicate_rows"]
    assert dup["severity"] == "warning" and dup["count"] == 2 and dup["message"]
    assert dup["examples"] == [
        {
            "row": 41,
            "texts": {"query": rows[0]["anchor"], "doc": rows[0]["positive"]},
            "same_as_row": 1,
        },
        {
            "row": 42,
            "texts": {"query": rows[5]["anchor"], "doc": rows[5]["positive"]},
            "same_as_row": 6,
        },
    ]
    equal = found["anchor_equals_positive"]
    assert equal["count"] == 1
    assert equal["examples"] == [
        {"row": 43, "texts": {"query": "Same text.", "doc": " same TEXT."}, "same_as_row": None}
    ]
    positives = Counter(d["doc"].strip().casefold() for d in data)
    assert found["duplicate_positives"]["count"] == sum(n for n in positives.values() if n > 1)

    got = client.get(f"/datasets/{posted['id']}")
    assert got.status_code == 200
    assert got.json()["preflight"] == preflight
    listed = {d["id"]: d for d in client.get("/datasets").json()["data"]}
    assert listed[posted["id"]]["preflight"] == preflight

    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert "preflight" in schema["DatasetRead"]["properties"]
    assert set(schema["PreflightFinding"]["properties"]) == {
        "code",
        "severity",
        "count",
        "message",
        "examples",
    }


def test_a_clean_upload_has_no_findings(pg_stack: Stack, tmp_path: Path) -> None:
    rows = [{"anchor": f"a{i}", "positive": f"p{i}", "negative": f"n{i}"} for i in range(5)]
    path = write_jsonl(tmp_path / "clean.jsonl", rows)
    with path.open("rb") as fh:
        r = pg_stack.client.post("/datasets", files={"file": ("clean.jsonl", fh)})
    assert r.status_code == 201, r.text
    assert r.json()["preflight"]["findings"] == []


def test_datasets_from_before_the_report_have_none(postgres_url: str) -> None:
    def migrate(*args: str) -> None:
        env = base_env(database_url=postgres_url)
        result = subprocess.run(
            python_cli("migrate", *args), env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr

    migrate("--revision", "0002")
    engine = create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO datasets (id, name, format, kind, columns, text_columns, rows, "
                    "size_bytes, sha256, storage_key, created_at) VALUES ('ds_old', 'old', "
                    "'jsonl', 'pair', '[\"anchor\", \"positive\"]', '[\"anchor\", \"positive\"]', "
                    "1, 10, 'x', 'datasets/ds_old.jsonl', now())"
                )
            )
        migrate()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT preflight FROM datasets")).all() == [(None,)]
        migrate("--downgrade", "0002")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM datasets")).scalar() == 1
    finally:
        engine.dispose()
