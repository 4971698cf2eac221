"""Resolving a client-given base model name to a model folder or a Hub id.

Names come from API clients, so they never become paths: a name follows the Hub id rules
(rules.names) and is looked up *inside* one of the configured model directories (a symlink that
leads outside one is refused); otherwise it is a Hub id, for the Hub client to resolve. The API
(does the model exist? which tokenizer?) and the worker (what to load) resolve with this one rule.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from rules.errors import ModelNotFound
from rules.names import check_model_name

logger = logging.getLogger(__name__)

# A folder counts as a model only if it holds one of these.
MODEL_MARKER_FILES: tuple[str, ...] = ("modules.json", "config.json")

# Every "cannot have it" says the same, whether or not anything of that name exists anywhere;
# a string that is no name at all is not echoed (it may be a path).
_UNAVAILABLE = "Base model {name}was not found or is not accessible: {reason}"
NOT_A_NAME = "it is not a Hub model id nor a model folder name"
NOT_FOUND = (
    "it is not a folder in the configured model directories, and the Hugging Face Hub could "
    "not load it"
)


def unavailable(name: str | None, reason: str = NOT_FOUND) -> ModelNotFound:
    """The ModelNotFound for base model `name` (None: a string not to echo), with `reason`
    (free of server paths)."""
    shown = f"{name!r} " if name is not None else ""
    return ModelNotFound(_UNAVAILABLE.format(name=shown, reason=reason))


def check_name(name: str) -> tuple[str, ...]:
    """The name's parts (`name` or `org`, `name`), or ModelNotFound when it is no model name."""
    try:
        check_model_name(name)
    except ValueError:
        raise unavailable(None, NOT_A_NAME) from None
    return tuple(name.split("/"))


def is_model_folder(path: Path) -> bool:
    """Whether `path` is a folder holding one of MODEL_MARKER_FILES."""
    return path.is_dir() and any((path / marker).is_file() for marker in MODEL_MARKER_FILES)


def resolve_base_model(name: str, model_dirs: Iterable[Path]) -> str:
    """A folder path (as a string) when `name` is a model folder inside one of `model_dirs`,
    else `name` itself, to be loaded from the Hugging Face Hub.

    Raises ModelNotFound for names that break the name rules (rules.names), or that resolve
    (symlinks followed) to a place outside the model directory they were looked up in.
    """
    parts = check_name(name)
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
        if is_model_folder(resolved):
            return str(resolved)
    return name


__all__ = [
    "MODEL_MARKER_FILES",
    "NOT_A_NAME",
    "NOT_FOUND",
    "check_name",
    "is_model_folder",
    "resolve_base_model",
    "unavailable",
]
