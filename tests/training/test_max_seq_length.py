"""One max-sequence-length rule (rules.seq_length), true to what the models take, on both sides.

Tiny, randomly initialised BERT-, RoBERTa- and MPNet-like sentence-transformers with 42 position
embeddings: the API's job preflight (the model's files read without torch) and the worker (the
loaded model) give the same max length for each, the worker's model embeds any text at that
length, and one token more would not fit its position embeddings.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from app.jobs.tokens import load_model_tokenizer
from rules.seq_length import position_limit
from worker.training.models import load_base_model

POSITIONS = 42
WORDS = [f"w{i}" for i in range(40)]
# [PAD] is id 1, the padding index RoBERTa's config names and MPNet hard-codes.
VOCAB = {t: i for i, t in enumerate(["[CLS]", "[PAD]", "[SEP]", "[UNK]", *WORDS])}
LONG_TEXT = " ".join(WORDS * 5)  # 200 words: longer than any limit here
SMALL = {
    "vocab_size": len(VOCAB),
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 37,
    "max_position_embeddings": POSITIONS,
}


def build_model(dest: Path, model_type: str, model_max_length: int | None, **config: Any) -> Path:
    """A sentence-transformers folder (Transformer + mean pooling) of a random `model_type`
    transformer whose tokenizer says `model_max_length` (None: nothing)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import AutoConfig, AutoModel, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(vocab=VOCAB, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", VOCAB["[CLS]"]), ("[SEP]", VOCAB["[SEP]"])],
    )
    lengths = {} if model_max_length is None else {"model_max_length": model_max_length}
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        **lengths,
    )
    torch.manual_seed(0)
    transformer_model = AutoModel.from_config(AutoConfig.for_model(model_type, **SMALL, **config))
    with tempfile.TemporaryDirectory(prefix=f"tiny-{model_type}-") as tmp:
        transformer_model.save_pretrained(tmp)
        fast.save_pretrained(tmp)
        transformer = Transformer(tmp)
        pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
        SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(dest))
    return dest


# name -> (model_type, tokenizer model_max_length, config overrides, the length that fits)
MODELS: dict[str, tuple[str, int | None, dict[str, Any], int]] = {
    "bert-like": ("bert", POSITIONS, {"pad_token_id": 1}, POSITIONS),
    # Positions start at pad_token_id + 1 = 2, and the tokenizer sets no length of its own.
    "roberta-like": ("roberta", None, {"pad_token_id": 1}, POSITIONS - 2),
    # MPNet starts at 2 too, whatever pad_token_id the config names.
    "mpnet-like": ("mpnet", POSITIONS, {"pad_token_id": 0}, POSITIONS - 2),
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("seq-length-models")
    for name, (model_type, model_max_length, config, _fits) in MODELS.items():
        build_model(root / name, model_type, model_max_length, **config)
    return root


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("requested", [None, 16, 4096])
def test_the_preflight_and_the_worker_agree(
    model_dir: Path, name: str, requested: int | None
) -> None:
    fits = MODELS[name][3]
    api = load_model_tokenizer(name, [model_dir], requested).max_seq_length
    model = load_base_model(name, [model_dir], "cpu", requested)
    assert api == model.max_seq_length == (16 if requested == 16 else fits)
    # The worker's model embeds a text longer than that: it is cut to a length that fits.
    assert model.encode([LONG_TEXT]).shape == (1, 32)


@pytest.mark.parametrize("name", list(MODELS))
def test_the_length_is_the_most_the_model_takes(model_dir: Path, name: str) -> None:
    import torch

    fits = MODELS[name][3]
    model = load_base_model(name, [model_dir], "cpu")
    transformer = model[0].model

    def forward(tokens: int) -> None:
        ids = torch.full((1, tokens), VOCAB["w0"])
        with torch.no_grad():
            transformer(input_ids=ids, attention_mask=torch.ones_like(ids))

    forward(fits)
    with pytest.raises((IndexError, RuntimeError)):
        forward(fits + 1)


# Encoders of both kinds (positions from 0, or after the padding index), each with what its
# forward needs besides input_ids.
CONFORMANCE: list[tuple[str, dict[str, Any]]] = [
    ("bert", {}),
    ("distilbert", {}),
    ("electra", {}),
    ("roberta", {}),
    ("roberta", {"pad_token_id": 0}),
    ("xlm-roberta", {}),
    ("xlm-roberta-xl", {}),
    ("camembert", {}),
    ("data2vec-text", {}),
    ("roberta-prelayernorm", {}),
    ("longformer", {}),
    ("ibert", {}),  # its quantised position table is no nn.Embedding, yet positions start at 2
    ("mpnet", {}),
    ("mpnet", {"pad_token_id": 0}),
    ("markuplm", {}),
    ("esm", {"pad_token_id": 1}),
    ("xmod", {}),
]


@pytest.mark.parametrize(("model_type", "config"), CONFORMANCE)
def test_the_rule_matches_the_models(model_type: str, config: dict[str, Any]) -> None:
    """For each model type the rule knows, a random model takes exactly position_limit tokens
    (its config as the worker reads it, and as config.json has it)."""
    import json

    import torch
    from transformers import AutoConfig, AutoModel

    model_config = AutoConfig.for_model(model_type, **SMALL, **config)
    limit = position_limit(model_config.to_dict())
    assert limit == position_limit(json.loads(model_config.to_json_string(use_diff=True)))
    assert limit is not None
    model = AutoModel.from_config(model_config).eval()

    def forward(tokens: int) -> None:
        ids = torch.full((1, tokens), 5)  # 5: no model's padding index
        extra = {"lang_ids": torch.zeros(1, dtype=torch.long)} if model_type == "xmod" else {}
        with torch.no_grad():
            model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra)

    forward(limit)
    with pytest.raises((IndexError, RuntimeError)):
        forward(limit + 1)
