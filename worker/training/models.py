"""Loading a client-given base model: the folder or Hub snapshot its name resolves to.

The name is resolved by rules.base_models, the rule the API's checks use too: a model folder inside
a configured model directory, else a Hub id that the Hub client resolves into the Hugging Face
cache. sentence-transformers only ever gets a folder found one of those two ways, never the
client's string (it would read an existing relative path as a local folder).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rules import seq_length
from rules.base_models import (
    NOT_FOUND,
    check_name,
    resolve_base_model,
    unavailable,
)
from rules.errors import ModelNotFound, short_reason

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

# Files of other frameworks and runtimes that sentence-transformers does not load: not fetched.
HUB_MODEL_IGNORE: tuple[str, ...] = (
    "*.onnx",
    "onnx/*",
    "openvino/*",
    "*.h5",
    "*.msgpack",
    "*.ot",
    "*.tflite",
    "tf_model*",
    "flax_model*",
    "rust_model*",
    "coreml/*",
)


def load_base_model(
    name: str,
    model_dirs: Iterable[Path],
    device: str,
    max_seq_length: int | None = None,
) -> SentenceTransformer:
    """Load the base model `name` onto `device`: from a model directory folder when there is one,
    otherwise from the Hub snapshot the Hub client resolves `name` to (hub_model_snapshot), so
    HF_HUB_OFFLINE=1 with a filled cache works. Any failure becomes ModelNotFound, with a message
    free of server paths.

    The model's max_seq_length becomes `max_seq_length` (None: the model's own), capped at what
    its position embeddings allow (rules.seq_length).
    """
    import torch
    from sentence_transformers import SentenceTransformer

    location = resolve_base_model(name, model_dirs)
    from_hub = location == name
    folder = hub_model_snapshot(name) if from_hub else Path(location)
    try:
        model = SentenceTransformer(str(folder), device=device)
    except torch.OutOfMemoryError:
        raise  # the model was found; the GPU is too full (the pipeline reports OutOfMemory)
    except Exception as exc:
        where = "on the Hugging Face Hub" if from_hub else "in the configured model directories"
        raise ModelNotFound(
            f"Base model {name!r} was found {where} but could not be loaded: {short_reason(exc)}"
        ) from exc
    if from_hub:
        # Loaded from a cache folder, sentence-transformers cannot tell the card which Hub model
        # this is (and must not name the folder): say it.
        model.model_card_data.base_model = name
        model.model_card_data.base_model_revision = folder.name

    length = seq_length.max_seq_length(_model_config(model), max_seq_length, model.max_seq_length)
    if max_seq_length is not None and length != max_seq_length:
        logger.warning(
            "max_seq_length %d exceeds what %s supports; using %s", max_seq_length, name, length
        )
    if length is not None and length != model.max_seq_length:
        model.max_seq_length = length
    return model


def hub_model_snapshot(name: str) -> Path:
    """The folder of Hub model `name` in the Hugging Face cache, fetched there by the Hub client
    when missing (HUB_MODEL_IGNORE left out); offline, only what the cache has. ModelNotFound,
    saying the same whatever exists on the worker's disk, when `name` is no Hub id or the Hub
    client cannot provide it."""
    from huggingface_hub import snapshot_download

    check_name(name)
    try:
        folder = snapshot_download(name, repo_type="model", ignore_patterns=list(HUB_MODEL_IGNORE))
    except Exception as exc:
        raise unavailable(name, f"{NOT_FOUND}: {short_reason(exc)}") from exc
    return Path(folder)


def _model_config(model: SentenceTransformer) -> Mapping[str, Any]:
    """The config (as config.json has it) of the model's first module's transformer; empty when
    that module has none."""
    config = getattr(getattr(model[0], "model", None), "config", None)
    to_dict = getattr(config, "to_dict", None)
    return to_dict() if callable(to_dict) else {}


__all__ = [
    "HUB_MODEL_IGNORE",
    "hub_model_snapshot",
    "load_base_model",
    "resolve_base_model",
    "short_reason",
    "unavailable",
]
