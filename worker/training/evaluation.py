"""Triplet accuracy of a model, as a plain dict with exactly METRIC_KEYS; STS correlations as
STS_METRIC_KEYS.

sentence-transformers' TripletEvaluator returns `{name}_{fn}_accuracy` for each similarity function
(`cosine`, `dot`, `euclidean`, `manhattan`) and, when given more than one function,
`{name}_max_accuracy`; this module strips the `{name}_` prefix. Its EmbeddingSimilarityEvaluator
returns `{name}_spearman_cosine` and `{name}_pearson_cosine` (for cosine similarity).

The eval set evaluated while training uses TripletLossEvaluator: the same triplet accuracies plus
the MNR loss on the eval set, computed from the embeddings the accuracies were computed from, so
one evaluation costs one encoding pass instead of an encoding pass plus the trainer's separate
eval-loss pass.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from worker.training.spec import METRIC_KEYS, SIMILARITY_FUNCTIONS, STS_METRIC_KEYS

if TYPE_CHECKING:
    import numpy as np
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import (
        EmbeddingSimilarityEvaluator,
        TripletEvaluator,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

STS_EVALUATOR_NAME = "sts"
# The key TripletLossEvaluator reports the eval loss under. Unprefixed on purpose: the trainer
# prefixes evaluator keys with "eval_", so it reaches the callbacks as "eval_loss", where the
# trainer's own eval-loss pass would have put it.
EVAL_LOSS_KEY = "loss"


def _triplet_evaluator_kwargs(data: Dataset, name: str, batch_size: int) -> dict[str, Any]:
    anchor, positive, negative = data.column_names[:3]
    return {
        "anchors": data[anchor],
        "positives": data[positive],
        "negatives": data[negative],
        "name": name,
        "batch_size": batch_size,
        "show_progress_bar": False,
        "write_csv": False,
        "similarity_fn_names": list(SIMILARITY_FUNCTIONS),
    }


def build_triplet_evaluator(data: Dataset, name: str, batch_size: int = 32) -> TripletEvaluator:
    """A TripletEvaluator over (anchor, positive, negative): the first 3 columns, in that order."""
    from sentence_transformers.sentence_transformer.evaluation import TripletEvaluator

    return TripletEvaluator(**_triplet_evaluator_kwargs(data, name, batch_size))


def eval_loss_batches(data: Dataset, batch_size: int, seed: int) -> list[list[int]]:
    """The row indices of each batch the trainer's eval-loss pass would use for `data`.

    The trainer builds its eval dataloader with the training batch sampler (no duplicates in a
    batch), the eval batch size, no drop_last and a generator seeded with `seed`; MNR's loss
    depends on which rows share a batch (in-batch negatives), so the same batches are used here.
    """
    import torch
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

    generator = torch.Generator()
    generator.manual_seed(seed)
    sampler = NoDuplicatesBatchSampler(
        data, batch_size=batch_size, drop_last=False, generator=generator, seed=seed
    )
    return [list(batch) for batch in sampler]


def mnr_loss_from_embeddings(
    loss: MultipleNegativesRankingLoss,
    embeddings: Sequence[np.ndarray],
    batches: Sequence[Sequence[int]],
) -> float:
    """The mean per-row `loss` over `batches` of rows of (anchor, positive, negative...)
    `embeddings`, as the trainer averages its eval loss (each batch weighted by its rows)."""
    import torch

    columns = [torch.as_tensor(e) for e in embeddings]
    total, rows = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            index = torch.as_tensor(list(batch), dtype=torch.long)
            value = loss.compute_loss_from_embeddings([c[index] for c in columns], None)  # type: ignore[arg-type]
            total += float(value) * len(batch)
            rows += len(batch)
    return total / rows if rows else float("nan")


@functools.cache
def _triplet_loss_evaluator_class() -> type[TripletEvaluator]:
    # Defined on first use: importing sentence-transformers (and torch) stays lazy.
    from sentence_transformers.sentence_transformer.evaluation import TripletEvaluator

    class TripletLossEvaluator(TripletEvaluator):
        """A TripletEvaluator that also reports EVAL_LOSS_KEY: `loss` (MNR) over `loss_batches`,
        from the embeddings it encoded for the accuracies. After each call, `last_values` holds
        {"loss", *METRIC_KEYS} as an eval MetricPoint has them."""

        def __init__(
            self,
            *,
            loss: MultipleNegativesRankingLoss,
            loss_batches: list[list[int]],
            **kwargs: Any,
        ) -> None:
            super().__init__(**kwargs)
            self.loss = loss
            self.loss_batches = loss_batches
            self.last_values: dict[str, float] | None = None
            self._embedded: list[np.ndarray] = []

        def embed_inputs(self, *args: Any, **kwargs: Any) -> np.ndarray:
            # Called once each for the anchors, the positives and the negatives, in that order.
            embeddings = super().embed_inputs(*args, **kwargs)
            self._embedded.append(embeddings)
            return embeddings

        def __call__(  # type: ignore[override]  # as TripletEvaluator's own
            self,
            model: SentenceTransformer,
            output_path: str | None = None,
            epoch: int = -1,
            steps: int = -1,
        ) -> dict[str, float]:
            self._embedded = []
            try:
                metrics = super().__call__(model, output_path, epoch, steps)
                loss_value = mnr_loss_from_embeddings(self.loss, self._embedded, self.loss_batches)
            finally:
                self._embedded = []
            self.last_values = {
                EVAL_LOSS_KEY: loss_value,
                **metrics_from_output(metrics, self.name),
            }
            metrics[EVAL_LOSS_KEY] = loss_value
            return metrics

    return TripletLossEvaluator


def build_triplet_loss_evaluator(
    data: Dataset,
    name: str,
    loss: MultipleNegativesRankingLoss,
    loss_batch_size: int,
    seed: int,
    batch_size: int = 32,
) -> TripletEvaluator:
    """A TripletEvaluator over `data` (as build_triplet_evaluator) that also reports the MNR
    `loss` on it under EVAL_LOSS_KEY, in the trainer's eval batches of `loss_batch_size` rows
    (eval_loss_batches), and keeps {"loss", *METRIC_KEYS} of its last call in `last_values`."""
    cls = _triplet_loss_evaluator_class()
    return cls(  # type: ignore[call-arg]
        loss=loss,
        loss_batches=eval_loss_batches(data, loss_batch_size, seed),
        **_triplet_evaluator_kwargs(data, name, batch_size),
    )


def same_triplets(evaluator: TripletEvaluator, data: Dataset) -> bool:
    """Whether `evaluator` evaluates exactly `data`'s triplets (first 3 columns), in order."""
    anchor, positive, negative = data.column_names[:3]
    return len(data) == len(evaluator.anchors) and all(
        list(mine) == list(data[column])
        for mine, column in (
            (evaluator.anchors, anchor),
            (evaluator.positives, positive),
            (evaluator.negatives, negative),
        )
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
