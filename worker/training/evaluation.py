"""Triplet accuracy of a model, as a plain dict with exactly METRIC_KEYS.

sentence-transformers' TripletEvaluator returns `{name}_{fn}_accuracy` for each similarity function
(`cosine`, `dot`, `euclidean`, `manhattan`) and, when given more than one function,
`{name}_max_accuracy`; this module strips the `{name}_` prefix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.training.spec import METRIC_KEYS, SIMILARITY_FUNCTIONS

if TYPE_CHECKING:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import TripletEvaluator


def build_triplet_evaluator(data: Dataset, name: str, batch_size: int = 32) -> TripletEvaluator:
    """A TripletEvaluator over a 3-column dataset (anchor, positive, negative, in that order)."""
    from sentence_transformers.sentence_transformer.evaluation import TripletEvaluator

    anchor, positive, negative = data.column_names
    return TripletEvaluator(
        anchors=data[anchor],
        positives=data[positive],
        negatives=data[negative],
        name=name,
        batch_size=batch_size,
        show_progress_bar=False,
        write_csv=False,
        similarity_fn_names=list(SIMILARITY_FUNCTIONS),  # type: ignore[arg-type]
    )


def metrics_from_output(output: dict[str, float], name: str) -> dict[str, float]:
    """The evaluator's output as exactly METRIC_KEYS (in that order), prefix stripped."""
    prefix = f"{name}_" if name else ""
    stripped = {
        key[len(prefix) :]: float(value) for key, value in output.items() if key.startswith(prefix)
    }
    metrics: dict[str, float] = {}
    for fn in SIMILARITY_FUNCTIONS:
        key = f"{fn}_accuracy"
        if key not in stripped:
            raise KeyError(f"the triplet evaluator reported no {key!r} (got {sorted(output)})")
        metrics[key] = stripped[key]
    metrics["max_accuracy"] = stripped.get("max_accuracy", max(metrics.values()))
    assert tuple(metrics) == METRIC_KEYS
    return metrics


def evaluate(model: SentenceTransformer, evaluator: TripletEvaluator) -> dict[str, float]:
    """Run `evaluator` on `model` and return METRIC_KEYS -> accuracy in [0, 1]."""
    return metrics_from_output(evaluator(model), evaluator.name)
