"""Resolving a client-given base model name to a local folder or a Hub id, and loading it.

Names come from API clients, so they never become arbitrary paths: a name is only ever looked up
*inside* one of the configured model directories, and anything that would leave one (absolute
names, `..`, backslashes, symlinks pointing outside) is refused.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from worker.training.errors import ModelNotFound

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

# A folder counts as a model only if it holds one of these.
MODEL_MARKER_FILES: tuple[str, ...] = ("modules.json", "config.json")

_NOT_FOUND = (
    "Base model {name!r} is not a folder in the configured model directories, "
    "and the Hugging Face Hub could not load it: {reason}"
)


def _check_name(name: str) -> tuple[str, ...]:
    """The name's path components, or ModelNotFound when the name could escape a model dir."""
    if not name or not name.strip():
        raise ModelNotFound("Base model name is empty.")
    if "\x00" in name or "\\" in name:
        raise ModelNotFound(f"Base model name {name!r} contains a forbidden character.")
    if name.startswith(("/", "~")) or PurePosixPath(name).is_absolute():
        raise ModelNotFound(f"Base model name {name!r} must be a relative name, not a path.")
    parts = tuple(name.split("/"))
    if any(part in ("", ".", "..") for part in parts):
        raise ModelNotFound(
            f"Base model name {name!r} must not contain empty, '.' or '..' components."
        )
    return parts


def _is_model_folder(path: Path) -> bool:
    return path.is_dir() and any((path / marker).is_file() for marker in MODEL_MARKER_FILES)


def resolve_base_model(name: str, model_dirs: Iterable[Path]) -> str:
    """A folder path (as a string) when `name` is a model folder inside one of `model_dirs`,
    else `name` itself, to be loaded from the Hugging Face Hub.

    Raises ModelNotFound for names that are not safe relative names, or that resolve (symlinks
    followed) to a place outside the model directory they were looked up in.
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
            raise ModelNotFound(
                f"Base model name {name!r} points outside the configured model directories."
            )
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
    otherwise from the Hugging Face Hub through its normal cache (so HF_HUB_OFFLINE=1 with a filled
    cache works). Any failure becomes ModelNotFound, with a message free of server paths.

    `max_seq_length` (None: the model's own) is capped at what the model's position embeddings
    allow.
    """
    import torch
    from sentence_transformers import SentenceTransformer

    location = resolve_base_model(name, model_dirs)
    is_folder = location != name
    if is_folder:
        try:
            model = SentenceTransformer(location, device=device)
        except torch.OutOfMemoryError:
            raise  # the model was found; the GPU is too full (the pipeline reports OutOfMemory)
        except Exception as exc:
            raise ModelNotFound(
                f"Base model {name!r} was found in the configured model directories "
                f"but could not be loaded: {short_reason(exc)}"
            ) from exc
    else:
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            validate_repo_id(name)
        except HFValidationError as exc:
            raise ModelNotFound(
                _NOT_FOUND.format(name=name, reason="it is not a valid Hub model id")
            ) from exc
        if os.path.lexists(name):
            # sentence-transformers would read a path relative to the working directory instead of
            # the Hub; a client name must never reach the server's filesystem that way.
            raise ModelNotFound(
                _NOT_FOUND.format(name=name, reason="the id is ambiguous with a path on the worker")
            )
        try:
            model = SentenceTransformer(name, device=device)
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:
            raise ModelNotFound(_NOT_FOUND.format(name=name, reason=short_reason(exc))) from exc

    if max_seq_length is not None:
        limit = _position_limit(model)
        if limit is not None and max_seq_length > limit:
            logger.warning(
                "max_seq_length %d exceeds what %s supports; using %d", max_seq_length, name, limit
            )
            max_seq_length = limit
        model.max_seq_length = max_seq_length
    return model


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
