"""Resolving a client-given base model name to a local folder or a Hub snapshot, and loading it.

Names come from API clients, so they never become paths: a name follows the Hub id rules
(worker.training.names), is looked up *inside* one of the configured model directories (a symlink
that leads outside one is refused), and otherwise is a Hub id that the Hub client resolves into
the Hugging Face cache. sentence-transformers only ever gets a folder found one of those two
ways, never the client's string (it would read an existing relative path as a local folder).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from worker.training.errors import ModelNotFound
from worker.training.names import check_model_name

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

# A folder counts as a model only if it holds one of these.
MODEL_MARKER_FILES: tuple[str, ...] = ("modules.json", "config.json")

# Every "cannot have it" says the same, whether or not anything of that name exists anywhere;
# a string that is no name at all is not echoed (it may be a path).
_UNAVAILABLE = "Base model {name}was not found or is not accessible: {reason}"
_NOT_A_NAME = "it is not a Hub model id nor a model folder name"
_NOT_FOUND = (
    "it is not a folder in the configured model directories, and the Hugging Face Hub could "
    "not load it"
)
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


def unavailable(name: str | None, reason: str = _NOT_FOUND) -> ModelNotFound:
    """The ModelNotFound for base model `name` (None: a string not to echo), with `reason`
    (free of server paths)."""
    shown = f"{name!r} " if name is not None else ""
    return ModelNotFound(_UNAVAILABLE.format(name=shown, reason=reason))


def _check_name(name: str) -> tuple[str, ...]:
    """The name's parts (`name` or `org`, `name`), or ModelNotFound when it is no model name."""
    try:
        check_model_name(name)
    except ValueError:
        raise unavailable(None, _NOT_A_NAME) from None
    return tuple(name.split("/"))


def _is_model_folder(path: Path) -> bool:
    return path.is_dir() and any((path / marker).is_file() for marker in MODEL_MARKER_FILES)


def resolve_base_model(name: str, model_dirs: Iterable[Path]) -> str:
    """A folder path (as a string) when `name` is a model folder inside one of `model_dirs`,
    else `name` itself, to be loaded from the Hugging Face Hub.

    Raises ModelNotFound for names that break the name rules (worker.training.names), or that
    resolve (symlinks followed) to a place outside the model directory they were looked up in.
    """
    parts = _check_name(name)
    for model_dir in model_dirs:
        try:
            root = Path(model_dir).resolve(strict=True)
        except OSError:
            logger.warning("A configured model directory does not exist; skipping it.")
            continue
        candidate = root.joinpath(*parts)
        if not os.path.lexists(candidate):
            continue
        resolved = candidate.resolve()
        if not resolved.is_relative_to(root):
            raise unavailable(name, "its folder leads outside the configured model directories")
        if _is_model_folder(resolved):
            return str(resolved)
    return name


# Absolute filesystem paths inside an error message (not URLs such as https://host/path).
_PATH_RE = re.compile(r"(?<![\w:/.])/(?:[^\s'\"/,;:()]+/)*[^\s'\"/,;:()]*")


def short_reason(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, without server filesystem paths, shortened."""
    text = str(exc).strip() or type(exc).__name__
    line = text.splitlines()[0].strip()
    line = _PATH_RE.sub("<path>", line)
    if len(line) > limit:
        line = line[: limit - 3].rstrip() + "..."
    return line


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

    `max_seq_length` (None: the model's own) is capped at what the model's position embeddings
    allow.
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

    if max_seq_length is not None:
        limit = _position_limit(model)
        if limit is not None and max_seq_length > limit:
            logger.warning(
                "max_seq_length %d exceeds what %s supports; using %d", max_seq_length, name, limit
            )
            max_seq_length = limit
        model.max_seq_length = max_seq_length
    return model


def hub_model_snapshot(name: str) -> Path:
    """The folder of Hub model `name` in the Hugging Face cache, fetched there by the Hub client
    when missing (HUB_MODEL_IGNORE left out); offline, only what the cache has. ModelNotFound,
    saying the same whatever exists on the worker's disk, when `name` is no Hub id or the Hub
    client cannot provide it."""
    from huggingface_hub import snapshot_download

    _check_name(name)
    try:
        folder = snapshot_download(name, repo_type="model", ignore_patterns=list(HUB_MODEL_IGNORE))
    except Exception as exc:
        raise unavailable(name, f"{_NOT_FOUND}: {short_reason(exc)}") from exc
    return Path(folder)


def _position_limit(model: SentenceTransformer) -> int | None:
    """The longest input the first module's transformer can embed, when it says.

    That is max_position_embeddings, less the offset RoBERTa-family embeddings (XLM-R, MPNet...)
    start their positions at (padding_idx + 1), which they mark with an int `padding_idx` next to a
    learned `position_embeddings` table.
    """
    import torch

    hf_model = getattr(model[0], "model", None)
    config = getattr(hf_model, "config", None)
    if not isinstance(hf_model, torch.nn.Module) or config is None:
        return None
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    value = getattr(config, "max_position_embeddings", None)
    if not isinstance(value, int) or value <= 0:
        return None
    for module in hf_model.modules():
        padding_idx = getattr(module, "padding_idx", None)
        if isinstance(padding_idx, int) and isinstance(
            getattr(module, "position_embeddings", None), torch.nn.Embedding
        ):
            return value - (padding_idx + 1)
    return value
