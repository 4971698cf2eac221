"""A tiny, randomly initialised sentence-transformers model built offline in a few seconds.

The Hugging Face Hub is not reachable from tests, so tests that need a real model folder build one
here: a WordPiece tokenizer trained on real sentences, a 2-layer BERT and mean pooling, saved as an
ordinary sentence-transformers folder.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

# tests/support/tiny_model.py -> parents[2] is the repo root, parents[3] the folder above it.
SHARED_DATA: Path = Path(__file__).resolve().parents[3] / "shared" / "data"
SNLI_TRIPLETS: Path = SHARED_DATA / "snli_dev_triplets.jsonl"

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def read_jsonl(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The first `limit` objects (all when None) of a JSON Lines file."""
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if limit is not None and len(rows) >= limit:
                break
            if line.strip():
                rows.append(json.loads(line))
    return rows


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write `rows` as JSON Lines to `path` (parents created); returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def as_pairs(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """(anchor, positive) pairs made from triplets by dropping `negative`."""
    return [{"anchor": r["anchor"], "positive": r["positive"]} for r in rows]


def _default_corpus() -> Iterator[str]:
    for row in read_jsonl(SNLI_TRIPLETS):
        for value in row.values():
            if isinstance(value, str):
                yield value


def build_tiny_model(dest: Path, corpus: Iterable[str] | None = None) -> Path:
    """Build a tiny sentence-transformers model (Transformer + mean Pooling) into `dest`.

    Deterministic: the same corpus gives the same tokenizer and the same initial weights.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import BertConfig, BertModel, BertTokenizerFast

    texts = list(corpus) if corpus is not None else list(_default_corpus())

    trained = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    trained.normalizer = normalizers.BertNormalizer(lowercase=True)
    trained.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=2000, special_tokens=SPECIAL_TOKENS, show_progress=False
    )
    trained.train_from_iterator(texts, trainer=trainer)
    # The trainer numbers its alphabet in hash order, which changes from run to run: renumber the
    # learned tokens (special tokens first, then sorted) so the same corpus gives the same ids.
    learned = sorted(t for t in trained.get_vocab() if t not in SPECIAL_TOKENS)
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *learned])}
    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    fast_tokenizer = BertTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        model_max_length=128,
    )

    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    bert = BertModel(config)

    dest = Path(dest)
    with tempfile.TemporaryDirectory(prefix="tiny-bert-") as tmp:
        bert.save_pretrained(tmp)
        fast_tokenizer.save_pretrained(tmp)
        transformer = Transformer(tmp)
        pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
        model = SentenceTransformer(modules=[transformer, pooling], device="cpu")
        model.save(str(dest))
    return dest
