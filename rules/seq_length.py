"""The max-sequence-length rule: how many tokens of each text a run's model sees.

A run uses the job's ``max_seq_length``, else the model's own (what sentence-transformers gives
it), and never more than the model's learned position embeddings can index: a longer input fails
inside the model. BERT-style embeddings number positions from 0, so ``max_position_embeddings``
tokens fit. RoBERTa-style ones (XLM-R, CamemBERT, MPNet, ...) number them from ``padding_idx + 1``
(transformers' ``create_position_ids_from_input_ids``), so a RoBERTa or MPNet with 514 positions
and padding index 1 takes 512 tokens. sentence-transformers itself caps only at
``max_position_embeddings``, which would let such a model fail on its longest texts.

The rule reads the model's ``config.json`` as a dict, so the API (from the file) and the worker
(``config.to_dict()`` of the loaded model) compute the same length.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# RoBERTa-style model types, whose embeddings take the config's pad_token_id as padding_idx,
# with the pad_token_id their config class defaults to (for a config.json that leaves it out).
_PAD_TOKEN_DEFAULTS = {
    "roberta": 1,
    "roberta-prelayernorm": 1,
    "xlm-roberta": 1,
    "xlm-roberta-xl": 1,
    "camembert": 1,
    "data2vec-text": 1,
    "longformer": 1,
    "ibert": 1,
    "luke": 1,
    "xmod": 1,
    "layoutlmv3": 1,
    "markuplm": 0,
    "lilt": 0,
    "altclip_text_model": 1,
    "clap_text_model": 1,
    "bridgetower_text_model": 1,
}
# Model types whose embeddings hard-code padding_idx, whatever the config's pad_token_id says.
_FIXED_PADDING_IDX = {"mpnet": 1}


def text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The text model's part of a config: its ``text_config`` in a multimodal model's config."""
    nested = config.get("text_config")
    return nested if isinstance(nested, Mapping) else config


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def position_offset(config: Mapping[str, Any]) -> int:
    """The first position id the model's embeddings use (0 for BERT-style ones)."""
    config = text_config(config)
    model_type = str(config.get("model_type"))
    pad = _int(config.get("pad_token_id"))
    if model_type in _FIXED_PADDING_IDX:
        return _FIXED_PADDING_IDX[model_type] + 1
    if model_type in _PAD_TOKEN_DEFAULTS:
        return (_PAD_TOKEN_DEFAULTS[model_type] if pad is None else pad) + 1
    # ESM numbers positions the same way, but only with a learned table (rotary ESM models have
    # none) and a pad token (its config has no default one).
    absolute = config.get("position_embedding_type", "absolute") == "absolute"
    if model_type == "esm" and absolute and pad is not None:
        return pad + 1
    return 0


def position_limit(config: Mapping[str, Any]) -> int | None:
    """The most tokens, special tokens included, the model's position embeddings take; None when
    the config states no usable ``max_position_embeddings``."""
    positions = _int(text_config(config).get("max_position_embeddings"))
    if positions is None:
        return None
    limit = positions - position_offset(config)
    return limit if limit > 0 else None


def max_seq_length(
    config: Mapping[str, Any], requested: int | None, model_default: int | None
) -> int | None:
    """The max length a run trains with: ``requested`` (the job's; None: none) else
    ``model_default`` (the model's own), capped at ``position_limit(config)``; None when
    nothing says."""
    length = requested if requested is not None else model_default
    limit = position_limit(config)
    if limit is None or (length is not None and length <= limit):
        return length
    return limit


__all__ = ["max_seq_length", "position_limit", "position_offset", "text_config"]
