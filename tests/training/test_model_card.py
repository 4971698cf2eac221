"""The saved model's card (README.md) states the base model, data sizes, hyperparameters and the
base vs fine-tuned metrics, in its "Fine-tuned with Embedtune" section."""

from __future__ import annotations

import re

from tests.training.conftest import local
from worker.training.card import SECTION_TITLE, CardFacts, add_section, render_section
from worker.training.pipeline import run
from worker.training.spec import METRIC_KEYS, Holdout


def section(card: str) -> str:
    start = card.index(SECTION_TITLE)
    end = card.find("\n## ", start + len(SECTION_TITLE))
    return card[start : end if end != -1 else len(card)]


def table(text: str, heading: str) -> dict[str, list[str]]:
    """The rows of the Markdown table under `### heading`: first cell -> the other cells."""
    block = text.split(f"### {heading}\n", 1)[1].split("\n### ", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in block.splitlines():
        if line.startswith("|") and not line.startswith("|:"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_card_states_base_model_data_hyperparameters_and_metrics(tiny_run):
    result, spec = tiny_run.result, tiny_run.spec
    card = (result.model_dir / "README.md").read_text()
    ours = section(card)
    # Placed under the title, before sentence-transformers' own sections, and only once.
    assert card.count(SECTION_TITLE) == 1
    assert card.index(SECTION_TITLE) < card.index("## Model Details")
    assert card.startswith("---\n")  # the card's metadata block is untouched

    assert "Fine-tuned from `tiny` with MultipleNegativesRankingLoss for 6 steps." in ours
    assert table(ours, "Data") == {
        "data": ["rows"],
        "train": ["96"],
        "eval": ["60"],
        "test": ["80"],
        "sts": ["none"],
    }
    hp = spec.hyperparameters
    assert table(ours, "Hyperparameters") == {
        "hyperparameter": ["value"],
        "epochs": [str(hp.epochs)],
        "batch_size": ["8"],
        "learning_rate": ["0.001"],
        "warmup_ratio": ["0.1"],
        "max_seq_length": ["128"],  # resolved: the tiny model's own
        "seed": ["42"],
        "precision": [result.precision],  # resolved: fp32 on CPU
        "max_steps": ["6"],
        "eval_steps": ["1"],  # as given
    }
    assert "Computed on the test data" in ours
    metrics = table(ours, "Base vs fine-tuned")
    assert list(metrics) == ["metric", *METRIC_KEYS]
    for key in METRIC_KEYS:
        base, tuned = result.metrics["base"][key], result.metrics["fine_tuned"][key]
        assert metrics[key] == [f"{base:.4f}", f"{tuned:.4f}", f"{tuned - base:+.4f}"]


def test_card_says_when_eval_rows_were_held_out(tmp_path, make_spec, data_files):
    spec = make_spec(tmp_path, local(data_files["train_triplets"]))
    result = run(spec, lambda p: None)
    ours = section((result.model_dir / "README.md").read_text())
    data = table(ours, "Data")
    assert data["train"] == ["91"]
    held = r"5 \(held out of the training data: 5% of its rows, seed 42; not trained on\)"
    assert re.fullmatch(held, data["eval"][0])
    assert "Computed on the rows held out of the training data" in ours


def test_card_without_metrics_says_so(tmp_path):
    facts = CardFacts(
        base_model="org/model",
        loss="MultipleNegativesRankingLoss",
        total_steps=3,
        train_rows=10,
        eval_rows=None,
        test_rows=None,
        sts_rows=None,
        holdout=None,
        hyperparameters={"epochs": 1, "max_steps": None},
        metrics=None,
        evaluated_on=None,
    )
    text = render_section(facts)
    assert "No triplet data to score on" in text
    assert table(text, "Hyperparameters")["max_steps"] == ["none"]
    # A folder without a card gets one holding just the section.
    path = add_section(tmp_path, facts)
    assert path.read_text().startswith(SECTION_TITLE)


def test_card_lists_sts_correlations_and_a_holdout():
    facts = CardFacts(
        base_model="m",
        loss="MultipleNegativesRankingLoss",
        total_steps=3,
        train_rows=95,
        eval_rows=5,
        test_rows=None,
        sts_rows=40,
        holdout=Holdout(rows=5, share=0.05, seed=3),
        hyperparameters={},
        metrics={
            "base": {"cosine_accuracy": 0.5, "sts_spearman_cosine": 0.25},
            "fine_tuned": {"cosine_accuracy": 0.75, "sts_spearman_cosine": None},
        },
        evaluated_on="holdout",
    )
    text = render_section(facts)
    assert table(text, "Data")["sts"] == ["40"]
    assert "seed 3" in table(text, "Data")["eval"][0]
    rows = table(text, "Base vs fine-tuned")
    assert rows["cosine_accuracy"] == ["0.5000", "0.7500", "+0.2500"]
    assert rows["sts_spearman_cosine"] == ["0.2500", "n/a", "n/a"]
