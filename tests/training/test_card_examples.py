"""The saved model folder quotes no row of the data unless the job asks (`card_examples`).

sentence-transformers' automatic card has a `widget:` of data sentences, a usage snippet made of
them and "Samples" tables of each train/eval dataset; the rows here carry a marker that appears
nowhere else, so any file of the folder holding it (or any whole text) quotes the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.tiny_model import write_jsonl
from tests.training.conftest import local
from worker.training.pipeline import run
from worker.training.spec import Hyperparameters

MARKER = "Qzv7Mk"


def marked(rows: list[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
    """`rows` with every text prefixed by the marker and `tag` (unique per row and column)."""
    return [
        {key: f"{MARKER} {tag}{i} {value}" for key, value in row.items()}
        for i, row in enumerate(rows)
    ]


def texts_in(folder: Path) -> dict[str, str]:
    """Relative path -> text of every file in `folder` (undecodable bytes replaced)."""
    return {
        str(path.relative_to(folder)): path.read_bytes().decode("utf-8", errors="replace")
        for path in folder.rglob("*")
        if path.is_file()
    }


@pytest.fixture
def marked_data(tmp_path: Path, snli_rows: list[dict[str, Any]]) -> dict[str, Any]:
    data = tmp_path / "data"
    train, evals, test = (
        marked(snli_rows[:40], "train"),
        marked(snli_rows[200:220], "eval"),
        marked(snli_rows[300:320], "test"),
    )
    return {
        "train": local(write_jsonl(data / "train.jsonl", train)),
        "eval": local(write_jsonl(data / "eval.jsonl", evals)),
        "test": local(write_jsonl(data / "test.jsonl", test)),
        "texts": {value for row in (*train, *evals, *test) for value in row.values()},
    }


def train_marked(tmp_path: Path, make_spec: Any, marked_data: dict[str, Any], **kw: Any) -> Path:
    spec = make_spec(
        tmp_path,
        marked_data["train"],
        eval=marked_data["eval"],
        test=marked_data["test"],
        hyperparameters=Hyperparameters(batch_size=8, learning_rate=1e-3, max_steps=2),
        **kw,
    )
    return run(spec, lambda p: None).model_dir


def test_by_default_no_file_of_the_model_quotes_the_data(tmp_path, make_spec, marked_data):
    folder = train_marked(tmp_path, make_spec, marked_data)
    files = texts_in(folder)
    assert "README.md" in files
    for name, text in files.items():
        assert MARKER not in text, name
        assert MARKER.lower() not in text.lower(), name
        leaked = [t for t in marked_data["texts"] if t in text]
        assert leaked == [], name
    card = files["README.md"]
    assert "widget: []" in card or "widget:" not in card
    assert "* Samples:" not in card
    # What the card still says about the data: sizes and token statistics, and the usage
    # snippet with sentence-transformers' own sentences.
    assert "* Size: 40 training samples" in card
    assert "The weather is lovely today." in card


def test_card_examples_on_quotes_rows(tmp_path, make_spec, marked_data):
    folder = train_marked(tmp_path, make_spec, marked_data, card_examples=True)
    card = (folder / "README.md").read_text()
    assert "* Samples:" in card
    assert f"{MARKER} train0" in card  # the first rows, in the Samples table
    widget = card.split("widget:", 1)[1].split("\n---", 1)[0]
    assert MARKER in widget
