"""An independent triplet-accuracy computation, to check the service's evaluator against."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def cosine_triplet_accuracy(model_dir: Path, triplets_path: Path) -> float:
    """Share of triplets whose anchor is more cosine-similar to the positive than the negative."""
    from sentence_transformers import SentenceTransformer

    rows = [json.loads(line) for line in triplets_path.open()]
    model = SentenceTransformer(str(model_dir), device="cpu")

    def embed(column: str) -> np.ndarray:
        vectors = np.asarray(model.encode([r[column] for r in rows], batch_size=32))
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    anchors, positives, negatives = embed("anchor"), embed("positive"), embed("negative")
    pos = (anchors * positives).sum(axis=1)
    neg = (anchors * negatives).sum(axis=1)
    return float((pos > neg).mean())


def assert_same_accuracy(recomputed: float, reported: float, triplets_path: Path) -> None:
    """Equal as counts of correct triplets; the evaluator reports a float32 fraction."""
    n = sum(1 for _ in triplets_path.open())
    assert round(recomputed * n) == round(reported * n), (recomputed, reported, n)
    assert abs(recomputed - reported) < 1e-6
