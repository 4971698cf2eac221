"""GET /datasets a page at a time: newest first by (created_at, id), `limit` 1..100 (default
20), `cursor` from the page before, each team's own datasets only."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest

from app.auth import service as auth_service
from app.datasets.models import Dataset
from app.db.base import utcnow
from app.db.session import unit_of_work
from app.ids import new_id
from tests.fast.test_security_http import assert_error, upload


def add_datasets(team: str, count: int, *, same_time: int = 0) -> list[str]:
    """`count` dataset rows of team `team` a second apart (the last `same_time` of them at one
    instant, so that only their ids order them); ids newest first, as the API orders them."""
    start = utcnow() - timedelta(days=1)
    rows: list[tuple[Any, str]] = []
    with unit_of_work() as session:
        team_id = auth_service.ensure_team(session, team)[0].id
        for i in range(count):
            at = start + timedelta(seconds=min(i, count - same_time))
            dataset_id = new_id("ds")
            session.add(
                Dataset(
                    id=dataset_id,
                    team_id=team_id,
                    name=f"{team}-{i}",
                    format="jsonl",
                    kind="triplet",
                    columns=["anchor", "positive", "negative"],
                    text_columns=["anchor", "positive", "negative"],
                    rows=10,
                    size_bytes=100,
                    sha256="0" * 64,
                    storage_key=f"datasets/{dataset_id}.jsonl",
                    created_at=at,
                )
            )
            rows.append((at, dataset_id))
    return [dataset_id for _, dataset_id in sorted(rows, reverse=True)]


def all_pages(client: Any, limit: int) -> list[dict[str, Any]]:
    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        r = client.get("/datasets", params=params)
        assert r.status_code == 200, r.text
        pages.append(r.json())
        if not pages[-1]["has_more"]:
            return pages
        cursor = pages[-1]["next_cursor"]


def test_pages_hold_every_dataset_once_newest_first_ties_broken_by_id(team_client) -> None:
    client = team_client("a")
    expected = add_datasets("a", 7, same_time=3)
    pages = all_pages(client, limit=3)
    assert [len(p["data"]) for p in pages] == [3, 3, 1]
    assert [p["has_more"] for p in pages] == [True, True, False]
    assert pages[-1]["next_cursor"] is None
    assert all(p["next_cursor"] for p in pages[:-1])
    assert [d["id"] for p in pages for d in p["data"]] == expected


def test_the_default_page_is_20_and_a_limit_is_1_to_100(team_client) -> None:
    client = team_client("a")
    expected = add_datasets("a", 25)
    first = client.get("/datasets").json()
    assert [d["id"] for d in first["data"]] == expected[:20] and first["has_more"]
    assert [d["id"] for d in client.get("/datasets", params={"limit": 100}).json()["data"]] == (
        expected
    )
    for limit in (0, 101, -1):
        error = assert_error(
            client.get("/datasets", params={"limit": limit}), 422, "validation_error"
        )
        assert error["details"][0]["field"] == "limit"


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "%%%",
        # Well-formed, but for a job: a /datasets cursor carries a dataset id.
        base64.urlsafe_b64encode(b"2026-12-01T10:00:00+00:00|job_0123456789abcdef01234567")
        .decode()
        .rstrip("="),
        # A time without a timezone.
        base64.urlsafe_b64encode(b"2026-12-01T10:00:00|ds_0123456789abcdef01234567")
        .decode()
        .rstrip("="),
    ],
)
def test_a_bad_cursor_is_422_naming_the_field(team_client, cursor: str) -> None:
    error = assert_error(
        team_client("a").get("/datasets", params={"cursor": cursor}), 422, "invalid_cursor"
    )
    assert error["details"] == {"field": "cursor"}
    assert "GET /datasets" in error["message"]


def test_an_oversized_cursor_is_422(team_client) -> None:
    r = team_client("a").get("/datasets", params={"cursor": "A" * 5000})
    assert_error(r, 422, "validation_error")


def test_pages_hold_only_the_teams_own_datasets(team_client) -> None:
    a, b = team_client("a"), team_client("b")
    ours = add_datasets("a", 5)
    theirs = add_datasets("b", 4)
    assert [d["id"] for p in all_pages(a, limit=2) for d in p["data"]] == ours
    assert [d["id"] for p in all_pages(b, limit=2) for d in p["data"]] == theirs
    # Another team's cursor is only a position in time: it shows nothing of theirs.
    cursor = b.get("/datasets", params={"limit": 1}).json()["next_cursor"]
    listed = a.get("/datasets", params={"cursor": cursor, "limit": 100}).json()["data"]
    assert {d["id"] for d in listed} <= set(ours)


def test_an_upload_is_listed_as_get_shows_it(team_client) -> None:
    client = team_client("a")
    dataset = upload(client)
    page = client.get("/datasets").json()
    assert page == {"data": [dataset], "has_more": False, "next_cursor": None}
    assert client.get(f"/datasets/{dataset['id']}").json() == dataset
