"""`client.datasets`: upload, list, get and delete training data."""

from __future__ import annotations

import builtins
import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from embedtune_client.errors import raise_for_error
from embedtune_client.models import Dataset, DatasetList

if TYPE_CHECKING:
    from embedtune_client.client import Client

# The most GET /datasets answers at once: the fewest requests for the whole list.
PAGE_SIZE = 100

# The API's dataset ids: "ds_" and 24 hex digits.
DATASET_ID = re.compile(r"ds_[0-9a-f]{8,64}")


def is_local_file(value: object) -> bool:
    """Whether `value`, given where a dataset id is expected, names a local file to upload:
    any Path, or a string that is not a dataset id and names an existing file."""
    if isinstance(value, Path):
        return True
    return isinstance(value, str) and not DATASET_ID.fullmatch(value) and os.path.isfile(value)


class Datasets:
    """Datasets of the API key's team."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def upload(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        column_mapping: dict[str, str] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Dataset:
        """Upload a JSONL, CSV or Parquet file; returns the validated dataset (rows, kind, ...).

        `name` defaults to the file name on the server; `column_mapping` maps roles to your
        column names ({"anchor": "query", ...}). The request carries an Idempotency-Key (a new
        UUID unless given), so retrying after a lost connection never stores the file twice.
        Raises ValidationError (422, e.g. code `dataset_invalid`) for a file the API refuses.
        """
        file_path = Path(path)
        key = idempotency_key or str(uuid.uuid4())
        form: dict[str, str] = {}
        if name is not None:
            form["name"] = name
        if column_mapping is not None:
            form["column_mapping"] = json.dumps(column_mapping)
        opened: list[IO[bytes]] = []

        def build() -> dict[str, Any]:
            handle = file_path.open("rb")  # afresh for every attempt: a retry resends it all
            opened.append(handle)
            return {"files": {"file": (file_path.name, handle)}, "data": form}

        try:
            body = self._client.request(
                "POST", "/datasets", headers={"Idempotency-Key": key}, build=build
            )
        finally:
            for handle in opened:
                handle.close()
        return Dataset.model_validate(body)

    def page(self, *, limit: int | None = None, cursor: str | None = None) -> DatasetList:
        """A page of the team's datasets, newest first (the API's default is 20, at most 100);
        pass `next_cursor` as `cursor` for the next page while `has_more`."""
        params = {k: v for k, v in {"limit": limit, "cursor": cursor}.items() if v is not None}
        return DatasetList.model_validate(self._client.request("GET", "/datasets", params=params))

    def iter(self) -> Iterator[Dataset]:
        """Every dataset of the team, newest first, fetched a page (of 100) at a time as the
        iteration goes."""
        cursor: str | None = None
        while True:
            page = self.page(limit=PAGE_SIZE, cursor=cursor)
            yield from page.data
            if not page.has_more or page.next_cursor is None:
                return
            cursor = page.next_cursor

    def list(self) -> builtins.list[Dataset]:
        """All the team's datasets, newest first (every page: see `page` and `iter`)."""
        return builtins.list(self.iter())

    def get(self, dataset_id: str) -> Dataset:
        """One dataset; NotFoundError for an unknown id."""
        return Dataset.model_validate(self._client.request("GET", f"/datasets/{dataset_id}"))

    def delete(self, dataset_id: str) -> None:
        """Delete a dataset and its stored file. NotFoundError for an unknown id;
        ConflictError (`dataset_in_use`, `details["jobs"]` names them) while a queued or
        running job uses it."""
        response = self._client.send("DELETE", f"/datasets/{dataset_id}")
        raise_for_error(response)

    def resolve(self, value: Any) -> Any:
        """`value` as the job body takes it: a local file is uploaded and becomes its id; ids,
        Hub references (dicts) and None pass through."""
        return self.upload(value).id if is_local_file(value) else value
