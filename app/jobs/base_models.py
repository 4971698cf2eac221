"""Whether a job's base model exists, as far as the API can tell, before the job is queued.

A name is a model folder inside EMBEDTUNE_MODEL_DIRS (rules.base_models.resolve_base_model,
the worker's own rule), or a Hub id. A Hub id in the API's Hugging Face cache exists. Offline
(HF_HUB_OFFLINE=1) a Hub id that is not cached is refused, since the workers share that offline
world; online the Hub is asked (metadata only, nothing is downloaded): a repository it does not
have is refused, while a gated model, or a Hub that cannot be reached, lets the job through for
the worker to decide. A refusal lists the close local names (folders and cached Hub models), so
a typo is caught in the request, not 70 s later in a worker.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

from app.errors import ValidationFailed
from rules.base_models import MODEL_MARKER_FILES, is_model_folder, resolve_base_model
from rules.errors import ModelNotFound

log = logging.getLogger(__name__)

HUB_TIMEOUT_S = 10.0
MAX_SUGGESTIONS = 5
_CACHED_MODEL_PREFIX = "models--"


def check_base_model(name: str, model_dirs: Iterable[Path]) -> None:
    """Nothing when `name` may exist; 422 model_not_found, with close names, when the API can
    tell it does not."""
    model_dirs = list(model_dirs)
    try:
        if resolve_base_model(name, model_dirs) != name or _cached_on_hub(name):
            return
    except ModelNotFound as exc:  # a symlink leading out of a model dir, say
        raise _not_found(name, model_dirs, exc.message) from None
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise _not_found(
            name,
            model_dirs,
            "it is not a folder in the server's model directories, and the Hugging Face Hub is "
            "offline here (HF_HUB_OFFLINE) with no copy of it in the cache",
        )
    if _hub_says_missing(name):
        raise _not_found(
            name,
            model_dirs,
            "it is not a folder in the server's model directories, and the Hugging Face Hub has "
            "no model of that name",
        )


def _cached_on_hub(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return any(
        isinstance(try_to_load_from_cache(name, marker), str) for marker in MODEL_MARKER_FILES
    )


def _hub_says_missing(name: str) -> bool:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().model_info(name, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        return False  # it exists; the workers may hold a token for it
    except RepositoryNotFoundError:
        return True
    except Exception as exc:  # unreachable or failing Hub: let the worker try
        log.info("could not ask the Hugging Face Hub about %r: %s", name, type(exc).__name__)
    return False


def known_names(model_dirs: Iterable[Path]) -> list[str]:
    """Model folder names in the model dirs (`name` and `org/name`), and the Hub models in the
    API's Hugging Face cache, sorted."""
    return sorted({*_folder_names(model_dirs), *_cached_hub_models()})


def _folder_names(model_dirs: Iterable[Path]) -> Iterator[str]:
    for root in model_dirs:
        if not Path(root).is_dir():
            continue
        for child in Path(root).iterdir():
            if is_model_folder(child):
                yield child.name
            elif child.is_dir():
                yield from (f"{child.name}/{g.name}" for g in child.iterdir() if is_model_folder(g))


def _cached_hub_models() -> Iterator[str]:
    from huggingface_hub import constants

    cache = Path(constants.HF_HUB_CACHE)
    if not cache.is_dir():
        return
    for child in cache.iterdir():
        if child.name.startswith(_CACHED_MODEL_PREFIX):
            yield child.name[len(_CACHED_MODEL_PREFIX) :].replace("--", "/")


def _not_found(name: str, model_dirs: list[Path], reason: str) -> ValidationFailed:
    names = known_names(model_dirs)
    close = difflib.get_close_matches(name, names, n=MAX_SUGGESTIONS, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ValidationFailed(
        f"base_model: '{name}' was not found or is not accessible: {reason}.{hint}",
        {"field": "base_model", "base_model": name, "close_matches": close},
        code=ModelNotFound.code,
    )
