"""POST /jobs refuses a base model the API can tell does not exist, naming close local names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fast.test_security_http import upload

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The API's Hugging Face cache holding Hub model org/cached-model, as a download leaves it."""
    import huggingface_hub.constants

    root = tmp_path / "hf-hub"
    repo = root / "models--org--cached-model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(SHA)
    (repo / "snapshots" / SHA).mkdir(parents=True)
    (repo / "snapshots" / SHA / "config.json").write_text(json.dumps({"model_type": "bert"}))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    return root


def _create(client, base_model: str):  # type: ignore[no-untyped-def]
    body = {"base_model": base_model, "train_dataset": upload(client)["id"]}
    return client.post("/jobs", json=body)


def test_a_model_folder_and_a_cached_hub_model_are_accepted(team_client, hub_cache) -> None:
    client = team_client("a")
    assert _create(client, "tiny").status_code == 202
    assert _create(client, "org/cached-model").status_code == 202


@pytest.mark.parametrize(
    ("name", "close"),
    [("tinny", ["tiny"]), ("org/cached-modle", ["org/cached-model"]), ("zzz/nothing-alike", [])],
)
def test_an_unknown_model_is_422_with_close_names(team_client, hub_cache, name, close) -> None:
    r = _create(team_client("a"), name)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "model_not_found"
    assert error["details"] == {"field": "base_model", "base_model": name, "close_matches": close}
    assert "not found or is not accessible" in error["message"]
    assert "HF_HUB_OFFLINE" in error["message"]
    for suggestion in close:
        assert suggestion in error["message"]
    assert str(hub_cache) not in r.text  # no server path
    # Nothing was queued.
    assert team_client("a").get("/jobs").json()["data"] == []
