# ruff: noqa: F811  (the `run` fixture is imported, then requested by name)
"""`client.datasets`: one page (`page`), or every dataset across pages (`iter`, `list`)."""

from __future__ import annotations

import json

import httpx
from embedtune_client import Client, DatasetList

from tests.client.test_cli import run  # noqa: F401  (fixture)
from tests.fast.test_datasets_paging import add_datasets

TEAM = "team-a"  # the `api` fixture's team


def test_page_and_cursor(api: Client) -> None:
    expected = add_datasets(TEAM, 5)
    first = api.datasets.page(limit=2)
    assert isinstance(first, DatasetList)
    assert [d.id for d in first.data] == expected[:2] and first.has_more
    second = api.datasets.page(limit=2, cursor=first.next_cursor)
    assert [d.id for d in second.data] == expected[2:4] and second.has_more
    last = api.datasets.page(limit=2, cursor=second.next_cursor)
    assert [d.id for d in last.data] == expected[4:]
    assert (last.has_more, last.next_cursor) == (False, None)


def test_list_and_iter_follow_every_page(api: Client) -> None:
    expected = add_datasets(TEAM, 205)  # three pages of at most 100
    add_datasets("team-b", 3)
    assert [d.id for d in api.datasets.list()] == expected
    assert [d.id for d in api.datasets.iter()] == expected


def test_an_api_from_before_paging_is_read_as_one_page() -> None:
    dataset = {
        "id": "ds_0123456789abcdef01234567",
        "name": "old",
        "format": "jsonl",
        "kind": "triplet",
        "rows": 3,
        "size_bytes": 10,
        "sha256": "0" * 64,
        "created_at": "2026-11-30T10:00:00Z",
    }
    old_api = httpx.MockTransport(lambda request: httpx.Response(200, json={"data": [dataset]}))
    api = Client(url="http://old", api_key="k", http=httpx.Client(transport=old_api))
    page = api.datasets.page()
    assert ([d.id for d in page.data], page.has_more, page.next_cursor) == (
        [dataset["id"]],
        False,
        None,
    )
    assert [d.id for d in api.datasets.list()] == [dataset["id"]]


def test_the_cli_lists_a_page_and_says_how_to_get_the_next(run) -> None:  # type: ignore[no-untyped-def]
    expected = add_datasets(TEAM, 3)
    first = run("datasets", "list", "--limit", "2")
    assert first.exit_code == 0, first.output
    assert [line.split()[0] for line in first.stdout.splitlines()[1:]] == expected[:2]
    cursor = first.stderr.strip().removeprefix("more: --cursor ")
    second = json.loads(
        run("datasets", "list", "--limit", "2", "--cursor", cursor, "--json").stdout
    )
    assert [d["id"] for d in second["data"]] == expected[2:]
    assert (second["has_more"], second["next_cursor"]) == (False, None)
