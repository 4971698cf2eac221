"""Triplet accuracy of a model, as a plain dict with exactly METRIC_KEYS; STS correlations as
STS_METRIC_KEYS.

sentence-transformers' TripletEvaluator returns `{name}_{fn}_accuracy` for each similarity function
(`cosine`, `dot`, `euclidean`, `manhattan`) and, when given more than one function,
`{name}_max_accuracy`; this module strips the `{name}_` prefix. Its EmbeddingSimilarityEvaluator
returns `{name}_spearman_cosine` and `{name}_pearson_cosine` (for cosine similarity).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from worker.training.spec import METRIC_KEYS, SIMILARITY_FUNCTIONS, STS_METRIC_KEYS

if TYPE_CHECKING:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import (
        EmbeddingSimilarityEvaluator,
        TripletEvaluator,
    )

STS_EVALUATOR_NAME = "sts"


def build_triplet_evaluator(data: Dataset, name: str, batch_size: int = 32) -> TripletEvaluator:
    """A TripletEvaluator over (anchor, positive, negative): the first 3 columns, in that order."""
    from sentence_transformers.sentence_transformer.evaluation import TripletEvaluator

    anchor, positive, negative = data.column_names[:3]
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


def build_sts_evaluator(data: Dataset, batch_size: int = 32) -> EmbeddingSimilarityEvaluator:
    """An EmbeddingSimilarityEvaluator (cosine) over STS data (sentence1, sentence2, score)."""
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    return EmbeddingSimilarityEvaluator(
        sentences1=data["sentence1"],
        sentences2=data["sentence2"],
        scores=[float(s) for s in data["score"]],
        batch_size=batch_size,
        main_similarity="cosine",
        similarity_fn_names=["cosine"],
        name=STS_EVALUATOR_NAME,
        show_progress_bar=False,
        write_csv=False,
    )


def sts_metrics_from_output(output: dict[str, float], name: str) -> dict[str, float | None]:
    """sts_spearman_cosine and sts_pearson_cosine from the evaluator's output; None where the
    correlation is undefined (NaN: e.g. the model gives every pair the same similarity)."""
    metrics: dict[str, float | None] = {}
    for key in STS_METRIC_KEYS:
        raw = f"{name}_{key.removeprefix('sts_')}"
        if raw not in output:
            raise KeyError(f"the STS evaluator reported no {raw!r} (got {sorted(output)})")
        value = float(output[raw])
        metrics[key] = value if math.isfinite(value) else None
    return metrics


def evaluate_sts(
    model: SentenceTransformer, evaluator: EmbeddingSimilarityEvaluator
) -> dict[str, float | None]:
    """Run `evaluator` on `model` and return STS_METRIC_KEYS -> correlation in [-1, 1]."""
    return sts_metrics_from_output(evaluator(model), evaluator.name)
