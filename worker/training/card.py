"""The "Fine-tuned with Embedtune" section of the model card (the saved folder's README.md).

sentence-transformers writes the card itself; this section adds the facts it does not know or
cannot state plainly: the base model as the client named it, the data sizes (and the hold-out),
the hyperparameters as Embedtune resolved them, and the base vs fine-tuned metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.training.spec import Holdout, Metrics

CARD_FILE = "README.md"
SECTION_TITLE = "## Fine-tuned with Embedtune"
_EVALUATED_ON = {
    "test": "the test data",
    "eval": "the eval data",
    "holdout": "the rows held out of the training data",
}


@dataclass(frozen=True)
class CardFacts:
    base_model: str
    loss: str
    total_steps: int
    train_rows: int
    eval_rows: int | None
    test_rows: int | None
    sts_rows: int | None
    holdout: Holdout | None
    hyperparameters: Mapping[str, Any]
    metrics: Mapping[str, Metrics] | None
    evaluated_on: str | None


def _rows(value: int | None) -> str:
    return "none" if value is None else str(value)


def _number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def render_section(facts: CardFacts) -> str:
    """The Markdown section, starting with SECTION_TITLE and ending with a blank line."""
    eval_rows = _rows(facts.eval_rows)
    if facts.holdout is not None:
        eval_rows += (
            f" (held out of the training data: {facts.holdout.share:.0%} of its rows, "
            f"seed {facts.holdout.seed}; not trained on)"
        )
    lines = [
        SECTION_TITLE,
        "",
        f"Fine-tuned from `{facts.base_model}` with {facts.loss} for {facts.total_steps} steps.",
        "",
        "### Data",
        "",
        "| data | rows |",
        "|:-----|:-----|",
        f"| train | {facts.train_rows} |",
        f"| eval | {eval_rows} |",
        f"| test | {_rows(facts.test_rows)} |",
        f"| sts | {_rows(facts.sts_rows)} |",
        "",
        "### Hyperparameters",
        "",
        "| hyperparameter | value |",
        "|:---------------|:------|",
        *(
            f"| {name} | {'none' if value is None else value} |"
            for name, value in facts.hyperparameters.items()
        ),
        "",
        "### Base vs fine-tuned",
        "",
    ]
    if facts.metrics is None:
        lines += ["No triplet data to score on, so no metrics were computed.", ""]
    else:
        base, tuned = facts.metrics["base"], facts.metrics["fine_tuned"]
        where = _EVALUATED_ON.get(facts.evaluated_on or "", "the evaluation data")
        lines += [
            f"Computed on {where}; STS correlations (if any) on the STS data.",
            "",
            "| metric | base | fine-tuned | difference |",
            "|:-------|-----:|-----------:|-----------:|",
        ]
        for key in base:
            b, t = base[key], tuned.get(key)
            diff = t - b if b is not None and t is not None else None
            lines.append(f"| {key} | {_number(b)} | {_number(t)} | {_number(diff, signed=True)} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def add_section(model_dir: Path, facts: CardFacts) -> Path:
    """Put the section into `model_dir`/README.md before its first second-level heading (right
    under the card's title and summary), or write a card with just the section if none exists."""
    path = Path(model_dir) / CARD_FILE
    section = render_section(facts)
    card = path.read_text(encoding="utf-8") if path.is_file() else ""
    # The YAML front matter ends at the second '---' line; look for headings after it.
    body_start = 0
    if card.startswith("---"):
        end = card.find("\n---", 3)
        body_start = end + 4 if end != -1 else 0
    at = card.find("\n## ", body_start)
    if at == -1:
        card = card.rstrip("\n") + ("\n\n" if card else "") + section
    else:
        card = card[: at + 1] + section + card[at + 1 :]
    path.write_text(card, encoding="utf-8")
    return path


TIMINGS_TITLE = "### Training time"
# TIMING_KEYS (rules.phases) -> what the row of the card says.
_TIMING_LABELS = {
    "queued_s": "queued",
    "loading_s": "loading (data, base model)",
    "evaluating_base_s": "evaluating the base model",
    "training_s": "training (evaluations excluded)",
    "evaluating_s": "evaluating (during training and after it)",
    "saving_s": "saving the model folder",
}


def render_timings(timings: Mapping[str, float], throughput: float | None) -> str:
    """The "Training time" subsection: seconds per phase and the training throughput."""
    lines = [
        TIMINGS_TITLE,
        "",
        "| phase | seconds |",
        "|:------|--------:|",
        *(
            f"| {_TIMING_LABELS.get(key, key)} | {value:.3f} |"
            for key, value in timings.items()
            if value is not None
        ),
        "",
        "Throughput: "
        + ("n/a" if throughput is None else f"{throughput:.2f} training samples per second")
        + ". Packing and storing the model come after this card was written: the job's own "
        "`timings.saving_s` counts them too.",
        "",
    ]
    return "\n".join(lines) + "\n"


def add_timings(model_dir: Path, timings: Mapping[str, float], throughput: float | None) -> Path:
    """Put the "Training time" subsection at the end of the Embedtune section of
    `model_dir`/README.md (add_section wrote it), or at the end of the card without one."""
    path = Path(model_dir) / CARD_FILE
    card = path.read_text(encoding="utf-8") if path.is_file() else ""
    section = render_timings(timings, throughput)
    start = card.find(SECTION_TITLE)
    end = card.find("\n## ", start + len(SECTION_TITLE)) if start != -1 else -1
    if end == -1:
        card = card.rstrip("\n") + ("\n\n" if card else "") + section
    else:
        card = card[: end + 1] + section + card[end + 1 :]
    path.write_text(card, encoding="utf-8")
    return path
