"""The max-sequence-length rule on config.json dicts: BERT-, RoBERTa- and MPNet-like models.

tests/training/test_max_seq_length.py checks the same rule against real transformers models and
shows that the API's preflight and the worker apply it alike.
"""

from __future__ import annotations

from typing import Any

import pytest

from rules.seq_length import max_seq_length, position_limit, position_offset

BERT = {"model_type": "bert", "max_position_embeddings": 512, "pad_token_id": 0}
ROBERTA = {"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}
XLM_R = {"model_type": "xlm-roberta", "max_position_embeddings": 514, "pad_token_id": 1}
MPNET = {"model_type": "mpnet", "max_position_embeddings": 514, "pad_token_id": 1}


@pytest.mark.parametrize(
    ("config", "offset", "limit"),
    [
        (BERT, 0, 512),
        ({"model_type": "distilbert", "max_position_embeddings": 512}, 0, 512),
        (ROBERTA, 2, 512),
        (XLM_R, 2, 512),
        (MPNET, 2, 512),
        # RoBERTa takes its padding index from the config...
        ({**ROBERTA, "pad_token_id": 0}, 1, 513),
        # ...or, when config.json leaves it out, from its config class's default (1).
        ({"model_type": "roberta", "max_position_embeddings": 514}, 2, 512),
        ({"model_type": "markuplm", "max_position_embeddings": 514}, 1, 513),
        # MPNet hard-codes padding_idx = 1 whatever pad_token_id says.
        ({**MPNET, "pad_token_id": 0}, 2, 512),
        ({"model_type": "mpnet", "max_position_embeddings": 514}, 2, 512),
        # A multimodal model's text part decides.
        (
            {"model_type": "clap", "text_config": {**ROBERTA, "model_type": "clap_text_model"}},
            2,
            512,
        ),
        # ESM numbers from the pad token only with a learned position table.
        ({"model_type": "esm", "max_position_embeddings": 1026, "pad_token_id": 1}, 2, 1024),
        (
            {
                "model_type": "esm",
                "max_position_embeddings": 1026,
                "pad_token_id": 1,
                "position_embedding_type": "rotary",
            },
            0,
            1026,
        ),
    ],
)
def test_the_position_limit(config: dict[str, Any], offset: int, limit: int) -> None:
    assert position_offset(config) == offset
    assert position_limit(config) == limit


@pytest.mark.parametrize(
    "config",
    [
        {"model_type": "bert"},
        {"model_type": "bert", "max_position_embeddings": True},
        {"model_type": "bert", "max_position_embeddings": "512"},
        {"model_type": "roberta", "max_position_embeddings": 2},
        {"model_type": ["roberta"], "max_position_embeddings": None},
        {},
    ],
)
def test_no_limit_when_the_config_states_none(config: dict[str, Any]) -> None:
    assert position_limit(config) is None
    assert max_seq_length(config, 9000, None) == 9000


@pytest.mark.parametrize(
    ("config", "requested", "model_default", "expected"),
    [
        # The job's length wins, up to the limit.
        (BERT, 128, 256, 128),
        (BERT, 1024, 256, 512),
        (ROBERTA, 512, 514, 512),
        (ROBERTA, 513, None, 512),
        (MPNET, 4096, 384, 512),
        # Without one, the model's own, capped too: sentence-transformers gives a RoBERTa whose
        # tokenizer sets no model_max_length all 514 positions, 2 more than it can take.
        (BERT, None, 256, 256),
        (ROBERTA, None, 514, 512),
        (XLM_R, None, 514, 512),
        (MPNET, None, 514, 512),
        (MPNET, None, 384, 384),
        # Nothing said: the limit.
        (ROBERTA, None, None, 512),
    ],
)
def test_the_length_a_run_uses(
    config: dict[str, Any], requested: int | None, model_default: int | None, expected: int
) -> None:
    assert max_seq_length(config, requested, model_default) == expected


def test_nothing_known_is_none() -> None:
    assert max_seq_length({}, None, None) is None
