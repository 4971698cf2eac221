"""Token lengths of a job's texts under its base model's tokenizer, and what max_seq_length cuts.

The API never imports torch or transformers: the tokenizer is the model's ``tokenizer.json``,
read with the ``tokenizers`` package (Rust, no torch). The base model is found the way the worker
finds it (:func:`rules.base_models.resolve_base_model`): a folder inside the configured model
directories, else a Hub id, looked up in the local Hugging Face cache only (never downloaded here).

The max length is the one the worker will train with (:func:`rules.seq_length.max_seq_length`):
the job's ``max_seq_length``, else the model's own, capped at what the model's position
embeddings allow. The model's own is what sentence-transformers gives it: the model's
``sentence_bert_config.json`` ``max_seq_length``, else the smaller of ``tokenizer_config.json``
``model_max_length`` and ``config.json`` ``max_position_embeddings``. Lengths count the special
tokens, as the model sees the text.

Only the first SAMPLE_ROWS rows of each dataset are tokenized, so a large upload costs a bounded
time at POST /jobs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.datasets.formats import DatasetFormat
from app.datasets.preflight import MAX_EXAMPLES, cell_text, shorten
from rules import seq_length
from rules.base_models import resolve_base_model
from rules.errors import ModelNotFound, short_reason
from rules.names import check_hub_id

if TYPE_CHECKING:
    from tokenizers import Tokenizer

SAMPLE_ROWS = 10_000
BATCH_TEXTS = 1024
# Above this share of truncated texts in a role, the report warns: a few outliers are normal.
TRUNCATED_SHARE = 0.01
TRUNCATED_TEXTS = "truncated_texts"
PERCENTILES = (50, 90, 99)

# A model_max_length this large means "unset" (transformers' VERY_LARGE_INTEGER).
_UNSET_LENGTH = 10**12


class TokenizerUnavailable(Exception):
    """The base model's tokenizer cannot be read by the API; the message says why (no paths)."""


@dataclass(frozen=True)
class ModelTokenizer:
    tokenizer: Tokenizer = field(repr=False)
    max_seq_length: int | None
    max_seq_length_source: str | None


@dataclass(frozen=True)
class RoleData:
    """One dataset to measure: its role (train/eval/test), stored file and text columns."""

    role: str
    path: Path
    format: DatasetFormat
    text_columns: Sequence[str]
    rows: int


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _hub_snapshot(name: str) -> Path:
    """The cached snapshot folder of Hub model ``name`` (the API's Hugging Face cache only);
    TokenizerUnavailable when ``name`` is no Hub id (rules.names) or is not cached."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError as exc:  # pragma: no cover - tokenizers depends on huggingface_hub
        raise TokenizerUnavailable("huggingface_hub is not installed on the API") from exc
    try:
        check_hub_id(name)
    except ValueError:
        raise TokenizerUnavailable("the base model is not a model folder nor a Hub id") from None
    for marker in ("modules.json", "tokenizer.json", "config.json"):
        found = try_to_load_from_cache(name, marker)
        if isinstance(found, str):
            return Path(found).parent
    raise TokenizerUnavailable(
        "the base model is a Hub id that is not in the API's Hugging Face cache (the API never "
        "downloads; the worker will)"
    )


def _transformer_folder(root: Path) -> Path:
    """The folder of the model's Transformer module: ``modules.json`` may place it below root."""
    modules = root / "modules.json"
    if modules.is_file():
        try:
            entries = json.loads(modules.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            entries = []
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and str(entry.get("type", "")).endswith("Transformer"):
                folder = (root / str(entry.get("path") or "")).resolve()
                # A model folder's own file must not lead the API outside it either.
                if folder.is_relative_to(root.resolve()) and folder.is_dir():
                    return folder
                break
    return root


def _model_default(folder: Path, config: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """(the max length sentence-transformers gives the model in ``folder``, the file that says)."""
    st_length = _read_json(folder / "sentence_bert_config.json").get("max_seq_length")
    if isinstance(st_length, int) and st_length > 0:
        return st_length, "sentence_bert_config.json"
    model_max = _read_json(folder / "tokenizer_config.json").get("model_max_length")
    positions = seq_length.text_config(config).get("max_position_embeddings")
    candidates = [
        (v, source)
        for v, source in (
            (model_max, "tokenizer_config.json"),
            (positions, "config.json"),
        )
        if isinstance(v, int) and 0 < v < _UNSET_LENGTH
    ]
    if not candidates:
        return None, None
    return min(candidates, key=lambda c: c[0])


def effective_max_length(folder: Path, requested: int | None) -> tuple[int | None, str | None]:
    """(max length the worker trains with, where it comes from), from the Transformer folder's
    files and the job's ``max_seq_length`` (None: the model's own); (None, None) when unknown.
    A length capped at the position embeddings comes from ``config.json``."""
    config = _read_json(folder / "config.json")
    default, source = (None, None) if requested is not None else _model_default(folder, config)
    length = seq_length.max_seq_length(config, requested, default)
    if length is None:
        return None, None
    if length != (requested if requested is not None else default):
        return length, "config.json"
    return length, "hyperparameters" if requested is not None else source


def load_model_tokenizer(
    base_model: str, model_dirs: Iterable[Path], max_seq_length: int | None
) -> ModelTokenizer:
    """The base model's tokenizer (no truncation, no padding) and effective max length.
    Raises TokenizerUnavailable with a reason free of server paths."""
    from tokenizers import Tokenizer

    try:
        location = resolve_base_model(base_model, model_dirs)
    except ModelNotFound as exc:
        raise TokenizerUnavailable(str(exc)) from exc
    root = Path(location) if location != base_model else _hub_snapshot(base_model)
    folder = _transformer_folder(root)
    tokenizer_file = folder / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise TokenizerUnavailable(
            "the base model has no tokenizer.json (a slow, Python-only tokenizer); the API reads "
            "only fast tokenizers"
        )
    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
    except Exception as exc:  # a corrupt or too new tokenizer.json is a skip, not a 500
        raise TokenizerUnavailable(
            f"its tokenizer.json could not be read: {short_reason(exc)}"
        ) from exc
    # A saved tokenizer.json may carry its own truncation (often the model's max length) or
    # padding, which would hide exactly the lengths this report is about.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    length, source = effective_max_length(folder, max_seq_length)
    return ModelTokenizer(tokenizer, length, source)


def percentile(ordered: Sequence[int], p: float) -> int:
    """Nearest-rank percentile of ascending ``ordered`` (not empty): a length that occurs."""
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _sample(data: RoleData) -> tuple[int, list[tuple[int, str, str]]]:
    """(rows sampled, [(1-based row, column, text)]) for the first SAMPLE_ROWS rows."""
    columns = tuple(data.text_columns)
    texts: list[tuple[int, str, str]] = []
    sampled = 0
    from app.datasets.readers import open_reader  # lazy: pyarrow costs the idle API ~60 MB

    with open_reader(Path(data.path), data.format) as reader:
        for _line, row, values in reader.rows(columns):
            if row > SAMPLE_ROWS:
                break
            sampled = row
            texts.extend((row, c, cell_text(values[c])) for c in columns)
    return sampled, texts


def _lengths(tokenizer: Tokenizer, texts: Sequence[str]) -> list[int]:
    lengths: list[int] = []
    for start in range(0, len(texts), BATCH_TEXTS):
        batch = list(texts[start : start + BATCH_TEXTS])
        lengths.extend(len(e.ids) for e in tokenizer.encode_batch(batch, add_special_tokens=True))
    return lengths


def token_report(
    model: ModelTokenizer, datasets: Sequence[RoleData], base_model: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the report's ``tokens`` section, a ``truncated_texts`` warning or None)."""
    roles: dict[str, dict[str, Any]] = {}
    over: dict[str, dict[str, Any]] = {}
    examples: list[dict[str, Any]] = []
    limit = model.max_seq_length
    for data in datasets:
        sampled, texts = _sample(data)
        lengths = _lengths(model.tokenizer, [t for _r, _c, t in texts])
        ordered = sorted(lengths)
        truncated = sum(1 for n in lengths if n > limit) if limit is not None else None
        summary: dict[str, Any] = {
            "rows": data.rows,
            "sampled_rows": sampled,
            "texts": len(lengths),
            "min": ordered[0] if ordered else None,
            **{f"p{p}": percentile(ordered, p) if ordered else None for p in PERCENTILES},
            "max": ordered[-1] if ordered else None,
            "truncated": truncated,
            "truncated_share": round(truncated / len(lengths), 4)
            if truncated is not None and lengths
            else None,
        }
        roles[data.role] = summary
        if limit is None or truncated is None or not lengths:
            continue
        if truncated / len(lengths) <= TRUNCATED_SHARE:
            continue
        over[data.role] = {
            "truncated": truncated,
            "texts": len(lengths),
            "share": summary["truncated_share"],
        }
        for (row, column, text), n in zip(texts, lengths, strict=True):
            if len(examples) >= MAX_EXAMPLES:
                break
            if n > limit:
                examples.append(
                    {
                        "role": data.role,
                        "row": row,
                        "column": column,
                        "tokens": n,
                        "text": shorten(text),
                    }
                )
    section = {
        "base_model": base_model,
        "max_seq_length": limit,
        "max_seq_length_source": model.max_seq_length_source,
        "sample_rows": SAMPLE_ROWS,
        "roles": roles,
    }
    if not over:
        return section, None
    count = sum(v["truncated"] for v in over.values())
    which = ", ".join(
        f"{role} {v['truncated']} of {v['texts']} ({v['share']:.1%})" for role, v in over.items()
    )
    message = (
        f"{count} text(s) are longer than max_seq_length {limit} tokens under the base model's "
        f"tokenizer ({which}, in the first {SAMPLE_ROWS} rows of each dataset): the model sees "
        "only their first tokens, so whatever decides a match later in the text is lost. Raise "
        "max_seq_length (costs memory and time), or shorten or split the texts."
    )
    finding = {
        "code": TRUNCATED_TEXTS,
        "severity": "warning",
        "count": count,
        "message": message,
        "examples": examples,
        "details": {"max_seq_length": limit, "roles": over},
    }
    return section, finding


__all__ = [
    "SAMPLE_ROWS",
    "TRUNCATED_SHARE",
    "TRUNCATED_TEXTS",
    "ModelTokenizer",
    "RoleData",
    "TokenizerUnavailable",
    "effective_max_length",
    "load_model_tokenizer",
    "percentile",
    "token_report",
]
