"""The job-time preflight report (app.jobs.preflight) on small files: every finding, both errors.

The pure function is called directly; the HTTP test at the end runs against `pg_stack`.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.jobs import tokens as tokens_module
from app.jobs.preflight import (
    BATCH_FALSE_NEGATIVES,
    ERROR,
    TOO_FEW_TRAIN_ROWS,
    TRAIN_EVAL_OVERLAP,
    TRAIN_TEST_OVERLAP,
    TRUNCATED_TEXTS,
    WARNING,
    StoredData,
    has_errors,
    job_preflight,
)
from rules.holdout import held_out_indices, holdout_rows
from tests.conftest import HUB_MODEL, MINILM_MODEL, TINY_MODEL, Stack
from tests.support.services import upload
from tests.support.tiny_model import SNLI_TRIPLETS, read_jsonl

TRIPLET = ("anchor", "positive", "negative")
HP = {"epochs": 1, "batch_size": 16, "max_steps": None}


def triplets(n: int, prefix: str = "t") -> list[dict[str, str]]:
    return [
        {"anchor": f"{prefix} anchor {i}", "positive": f"{prefix} pos {i}", "negative": f"neg {i}"}
        for i in range(n)
    ]


def jsonl(path: Path, rows: list[dict[str, Any]]) -> StoredData:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return StoredData(path, "jsonl", tuple(rows[0]), len(rows))


def by_code(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["code"]: f for f in report["findings"]}


def test_steps_with_and_without_holdout(tmp_path: Path) -> None:
    train = jsonl(tmp_path / "train.jsonl", triplets(600))
    # No eval set: the worker's rule holds out 30 of 600 rows; 570 / 8 = 71.25 -> 72 * 4.
    report = job_preflight(
        train=train,
        eval=None,
        test=None,
        has_eval=False,
        hyperparameters={"epochs": 4, "batch_size": 8, "max_steps": None},
    )
    assert holdout_rows(600) == 30
    assert (report["steps"], report["train_rows"], report["holdout_rows"]) == (288, 570, 30)
    assert report["findings"] == [] and report["skipped"] == []
    # With an eval set (even a Hub one) nothing is held out.
    with_eval = job_preflight(
        train=train,
        eval=None,
        test=None,
        has_eval=True,
        hyperparameters={"epochs": 4, "batch_size": 8, "max_steps": None},
    )
    assert (with_eval["steps"], with_eval["holdout_rows"]) == (300, 0)
    # max_steps wins; fewer than 20 rows hold nothing out.
    small = jsonl(tmp_path / "small.jsonl", triplets(19))
    report = job_preflight(
        train=small,
        eval=None,
        test=None,
        has_eval=False,
        hyperparameters={"epochs": 1, "batch_size": 4, "max_steps": 7},
    )
    assert (report["steps"], report["train_rows"], report["holdout_rows"]) == (7, 19, 0)


def test_test_overlap_counts_rows_and_anchors(tmp_path: Path) -> None:
    train_rows = triplets(30)
    train = jsonl(tmp_path / "train.jsonl", train_rows)
    test_rows = triplets(10, prefix="other")
    test_rows[2] = dict(train_rows[5])  # a whole training row
    test_rows[4] = {**train_rows[7], "anchor": "  T ANCHOR 7 "}  # the same, case and spaces aside
    test_rows[6] = {**test_rows[6], "anchor": train_rows[9]["anchor"]}  # only the anchor
    test = jsonl(tmp_path / "test.jsonl", test_rows)
    # An eval set (on the Hub): nothing held out, every training row is trained on.
    report = job_preflight(train=train, eval=None, test=test, has_eval=True, hyperparameters=HP)
    finding = by_code(report)[TRAIN_TEST_OVERLAP]
    assert finding["severity"] == WARNING and not has_errors(report)
    assert finding["count"] == 3
    assert finding["details"] == {"rows": 2, "anchors": 3, "of": 10}
    assert [(e["row"], e["match"], e["same_as_train_row"]) for e in finding["examples"]] == [
        (3, "row", 6),
        (5, "row", 8),
        (7, "anchor", 10),
    ]
    assert finding["examples"][0]["texts"] == train_rows[5]
    assert "2 are whole training rows" in finding["message"]


def test_examples_are_capped_at_three(tmp_path: Path) -> None:
    rows = triplets(30)
    train = jsonl(tmp_path / "train.jsonl", rows)
    test = jsonl(tmp_path / "test.jsonl", rows[:8] + triplets(2, prefix="new"))
    finding = by_code(
        job_preflight(train=train, eval=None, test=test, has_eval=True, hyperparameters=HP)
    )[TRAIN_TEST_OVERLAP]
    assert finding["count"] == 8 and len(finding["examples"]) == 3
    assert finding["severity"] == WARNING


def test_eval_overlap_against_pair_training_data_in_csv_and_parquet(tmp_path: Path) -> None:
    # Training pairs (CSV, other column names): a whole row is its anchor and positive.
    pairs = tmp_path / "train.csv"
    with pairs.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["q", "d"])
        writer.writerows([[f"t anchor {i}", f"t pos {i}"] for i in range(25)])
    train = StoredData(pairs, "csv", ("q", "d"), 25)
    eval_rows = triplets(4, prefix="e")
    eval_rows[1] = {"anchor": "t anchor 3", "positive": "t pos 3", "negative": "anything"}
    evals = tmp_path / "eval.parquet"
    pq.write_table(pa.Table.from_pylist(eval_rows), evals)
    report = job_preflight(
        train=train,
        eval=StoredData(evals, "parquet", TRIPLET, 4),
        test=None,
        has_eval=True,
        hyperparameters=HP,
    )
    finding = by_code(report)[TRAIN_EVAL_OVERLAP]
    assert finding["details"] == {"rows": 1, "anchors": 1, "of": 4}
    assert finding["severity"] == WARNING
    assert TRAIN_TEST_OVERLAP not in by_code(report)


@pytest.mark.parametrize("field", ["test", "eval"])
def test_every_test_or_eval_row_in_train_is_an_error(tmp_path: Path, field: str) -> None:
    rows = triplets(40)
    train = jsonl(tmp_path / "train.jsonl", rows)
    inside = jsonl(tmp_path / "inside.jsonl", rows[10:15])
    report = job_preflight(
        train=train,
        eval=inside if field == "eval" else None,
        test=inside if field == "test" else None,
        has_eval=field == "eval",
        hyperparameters=HP,
    )
    code = TRAIN_TEST_OVERLAP if field == "test" else TRAIN_EVAL_OVERLAP
    finding = by_code(report)[code]
    assert finding["severity"] == ERROR and has_errors(report)
    assert finding["details"] == {"rows": 5, "anchors": 5, "of": 5}
    assert f"Every {field} row (5)" in finding["message"]


def test_anchors_alone_never_make_an_error(tmp_path: Path) -> None:
    rows = triplets(40)
    train = jsonl(tmp_path / "train.jsonl", rows)
    same_anchors = [{**r, "positive": "different"} for r in rows[:5]]
    test = jsonl(tmp_path / "test.jsonl", same_anchors)
    report = job_preflight(train=train, eval=None, test=test, has_eval=True, hyperparameters=HP)
    finding = by_code(report)[TRAIN_TEST_OVERLAP]
    assert finding["severity"] == WARNING and not has_errors(report)
    assert finding["details"] == {"rows": 0, "anchors": 5, "of": 5}


@pytest.mark.parametrize(("rows", "has_eval"), [(1, False), (1, True)])
def test_fewer_than_two_train_rows_is_an_error(tmp_path: Path, rows: int, has_eval: bool) -> None:
    train = jsonl(tmp_path / "train.jsonl", triplets(rows))
    report = job_preflight(train=train, eval=None, test=None, has_eval=has_eval, hyperparameters=HP)
    finding = by_code(report)[TOO_FEW_TRAIN_ROWS]
    assert finding["severity"] == ERROR and has_errors(report)
    assert finding["count"] == rows and report["train_rows"] == rows


def test_two_train_rows_are_enough(tmp_path: Path) -> None:
    train = jsonl(tmp_path / "train.jsonl", triplets(2))
    report = job_preflight(train=train, eval=None, test=None, has_eval=False, hyperparameters=HP)
    assert report["findings"] == [] and report["steps"] == 1


def test_batch_false_negatives_from_shared_positives(tmp_path: Path) -> None:
    train = jsonl(tmp_path / "train.jsonl", triplets(100))
    report = job_preflight(
        train=train,
        eval=None,
        test=None,
        has_eval=True,
        hyperparameters={"epochs": 1, "batch_size": 10, "max_steps": None},
        shared_positive_rows=20,
    )
    finding = by_code(report)[BATCH_FALSE_NEGATIVES]
    assert finding["severity"] == WARNING and finding["count"] == 20
    # 10 pairs, each in one batch with probability 9/99; spread over 10 batches (Poisson).
    per_batch = 10 * 9 / 99 / 10
    expected = round(10 * (1 - math.exp(-per_batch)), 1)
    assert finding["details"] == {
        "batch_size": 10,
        "batches_per_epoch": 10,
        "expected_batches_without_sampler": expected,
    }
    assert "no-duplicates batch sampler" in finding["message"]
    # Nothing shared (or unknown): no finding.
    for shared in (0, None):
        clean = job_preflight(
            train=train,
            eval=None,
            test=None,
            has_eval=True,
            hyperparameters=HP,
            shared_positive_rows=shared,
        )
        assert clean["findings"] == []


def test_hub_datasets_are_skipped() -> None:
    skipped = [{"field": "train_dataset", "reason": "hub"}]
    report = job_preflight(
        train=None, eval=None, test=None, has_eval=False, hyperparameters=HP, skipped=skipped
    )
    assert report == {
        "steps": None,
        "train_rows": None,
        "holdout_rows": None,
        "tokens": None,
        "findings": [],
        "skipped": skipped,
    }


def test_job_preflight_over_http(pg_stack: Stack, tmp_path: Path) -> None:
    client = pg_stack.client
    rows = triplets(40, prefix="http")
    shared = [{**r, "positive": "the same answer"} for r in triplets(2, prefix="shared")]
    train_path = tmp_path / "train.jsonl"
    train_path.write_text("".join(json.dumps(r) + "\n" for r in rows + shared))
    partly = tmp_path / "partly.jsonl"
    partly.write_text("".join(json.dumps(r) + "\n" for r in [rows[3], *triplets(4, "fresh")]))
    inside = tmp_path / "inside.jsonl"
    inside.write_text("".join(json.dumps(r) + "\n" for r in rows[:5]))
    train, partly_ds, inside_ds = (
        upload(client, p).json()["id"] for p in (train_path, partly, inside)
    )

    body = {
        "base_model": TINY_MODEL,
        "train_dataset": train,
        "test_dataset": partly_ds,
        "hyperparameters": {"epochs": 2, "batch_size": 8},
    }
    r = client.post("/jobs", json=body)
    assert r.status_code == 202, r.text
    job = r.json()
    preflight = job["preflight"]
    # 42 rows, 2 held out (no eval set): ceil(40 / 8) * 2.
    assert (preflight["steps"], preflight["train_rows"], preflight["holdout_rows"]) == (10, 40, 2)
    found = by_code(preflight)
    assert found[TRAIN_TEST_OVERLAP]["severity"] == WARNING
    assert found[TRAIN_TEST_OVERLAP]["details"] == {"rows": 1, "anchors": 1, "of": 5}
    assert found[TRAIN_TEST_OVERLAP]["examples"][0]["same_as_train_row"] == 4
    assert found[BATCH_FALSE_NEGATIVES]["count"] == 2
    # Token lengths under tiny-bert's tokenizer (read by the API without torch): short texts,
    # the model's own max length, nothing truncated.
    tokens = preflight["tokens"]
    assert (tokens["base_model"], tokens["max_seq_length"]) == (TINY_MODEL, 128)
    assert tokens["max_seq_length_source"] == "tokenizer_config.json"
    assert set(tokens["roles"]) == {"train", "test"}
    assert tokens["roles"]["train"]["texts"] == 42 * 3
    assert tokens["roles"]["test"]["truncated"] == 0
    assert TRUNCATED_TEXTS not in found and preflight["skipped"] == []
    assert client.get(f"/jobs/{job['id']}").json()["preflight"] == preflight

    before = {j["id"] for j in client.get("/jobs", params={"limit": 100}).json()["data"]}
    rejected = client.post("/jobs", json={**body, "test_dataset": inside_ds, "name": "leaky"})
    assert rejected.status_code == 422, rejected.text
    error = rejected.json()["error"]
    assert error["code"] == "preflight_failed"
    report = error["details"]
    assert report["steps"] == 10
    leak = by_code(report)[TRAIN_TEST_OVERLAP]
    assert leak["severity"] == ERROR and leak["details"] == {"rows": 5, "anchors": 5, "of": 5}
    assert "Every test row (5)" in error["message"]
    after = client.get("/jobs", params={"limit": 100}).json()["data"]
    assert {j["id"] for j in after} == before
    assert "leaky" not in {j["name"] for j in after}

    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert "preflight" in schema["JobRead"]["properties"]
    assert schema["JobPreflight"]["examples"]
    assert "tokens" in schema["JobPreflight"]["properties"]


def test_token_lengths_and_holdout_over_http(
    pg_stack: Stack, tmp_path: Path, model_root: Path
) -> None:
    """Real SNLI rows, a small max_seq_length: the truncated_texts warning on the stored job,
    the counts computed independently with the model's own (transformers) tokenizer; the
    hold-out counted by anchor; a Hub model from the API's Hugging Face cache; an uncached one
    skipped, never a 500."""
    client = pg_stack.client
    rows = read_jsonl(SNLI_TRIPLETS, limit=400)
    train_path = tmp_path / "snli.jsonl"
    train_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    train = upload(client, train_path).json()["id"]
    body = {
        "base_model": TINY_MODEL,
        "train_dataset": train,
        "hyperparameters": {"epochs": 1, "batch_size": 16, "max_seq_length": 16, "seed": 5},
    }
    r = client.post("/jobs", json=body)
    assert r.status_code == 202, r.text
    preflight = r.json()["preflight"]
    lengths = model_lengths(model_root / TINY_MODEL, texts_of(rows))
    truncated = sum(n > 16 for n in lengths)
    assert truncated / len(lengths) > 0.01
    train_stats = preflight["tokens"]["roles"]["train"]
    assert train_stats["truncated"] == truncated and train_stats["max"] == max(lengths)
    finding = by_code(preflight)[TRUNCATED_TEXTS]
    assert finding["severity"] == WARNING and finding["count"] == truncated
    assert finding["details"]["roles"]["train"]["texts"] == len(lengths)
    # The hold-out is the worker's own rule on the stored rows (grouped by premise).
    _kept, held = split_rows(train_path, seed=5)
    assert (preflight["holdout_rows"], preflight["train_rows"]) == (held, len(rows) - held)

    hub = client.post("/jobs", json={**body, "base_model": HUB_MODEL, "name": "hub"})
    assert hub.status_code == 202, hub.text
    assert hub.json()["preflight"]["tokens"]["roles"]["train"] == train_stats

    # Offline, a Hub id missing from the cache is refused outright (app.jobs.base_models).
    absent = client.post(
        "/jobs", json={**body, "base_model": "embedtune-test/not-cached", "name": "absent"}
    )
    assert absent.status_code == 422, absent.text
    assert absent.json()["error"]["code"] == "model_not_found"


# --- token lengths -----------------------------------------------------------------------------


def texts_of(rows: list[dict[str, Any]]) -> list[str]:
    return [r[c] for r in rows for c in TRIPLET]


def model_lengths(folder: Path, texts: list[str]) -> list[int]:
    """Token counts (special tokens included) from the model's transformers tokenizer: what
    sentence-transformers feeds the model before truncating."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return [len(ids) for ids in tokenizer(texts, truncation=False)["input_ids"]]


def split_rows(path: Path, seed: int) -> tuple[int, int]:
    """(kept, held) by the worker's split_holdout on the file loaded as the worker loads it."""
    from worker.training.data import load_train_data, split_holdout
    from worker.training.spec import LocalData

    full = load_train_data(LocalData(path, "jsonl", TRIPLET), path.parent / "work")
    kept, held, _ = split_holdout(full, seed)
    return len(kept), 0 if held is None else len(held)


@pytest.fixture(scope="module")
def snli_rows() -> list[dict[str, Any]]:
    return read_jsonl(SNLI_TRIPLETS, limit=300)


def tokens_report(
    tmp_path: Path,
    rows: list[dict[str, Any]],
    model_root: Path,
    base_model: str = TINY_MODEL,
    **hp: Any,
) -> dict[str, Any]:
    train = jsonl(tmp_path / "train.jsonl", rows)
    return job_preflight(
        train=train,
        eval=None,
        test=jsonl(tmp_path / "test.jsonl", triplets(50, prefix="unseen")),
        has_eval=False,
        hyperparameters={**HP, **hp},
        base_model=base_model,
        model_dirs=[model_root],
    )


def test_token_lengths_and_a_known_truncated_share(
    tmp_path: Path, model_root: Path, snli_rows: list[dict[str, Any]]
) -> None:
    import numpy as np

    report = tokens_report(tmp_path, snli_rows, model_root, max_seq_length=16)
    lengths = model_lengths(model_root / TINY_MODEL, texts_of(snli_rows))
    truncated = sum(n > 16 for n in lengths)
    share = truncated / len(lengths)
    assert 0.01 < share < 0.9  # a share the warning is about, not everything

    tokens = report["tokens"]
    assert tokens["max_seq_length"] == 16 and tokens["max_seq_length_source"] == "hyperparameters"
    assert tokens["sample_rows"] == tokens_module.SAMPLE_ROWS
    train = tokens["roles"]["train"]
    nearest_rank = {
        f"p{p}": int(np.percentile(lengths, p, method="inverted_cdf")) for p in (50, 90, 99)
    }
    assert train == {
        "rows": 300,
        "sampled_rows": 300,
        "texts": 900,
        "min": min(lengths),
        **nearest_rank,
        "max": max(lengths),
        "truncated": truncated,
        "truncated_share": round(share, 4),
    }
    assert tokens["roles"]["test"]["texts"] == 150
    assert tokens["roles"]["test"]["truncated"] == 0

    finding = by_code(report)[TRUNCATED_TEXTS]
    assert finding["severity"] == WARNING and not has_errors(report)
    assert finding["count"] == truncated
    assert "test" not in finding["details"]["roles"]
    assert finding["details"]["max_seq_length"] == 16
    assert finding["details"]["roles"]["train"] == {
        "truncated": truncated,
        "texts": 900,
        "share": round(share, 4),
    }
    assert len(finding["examples"]) == 3
    for example in finding["examples"]:
        row = snli_rows[example["row"] - 1]
        assert row[example["column"]].startswith(example["text"].rstrip("\u2026"))
        assert example["role"] == "train" and example["tokens"] > 16
    assert "max_seq_length 16" in finding["message"]


def test_the_models_own_max_length(tmp_path: Path, model_root: Path, snli_rows) -> None:
    """No max_seq_length: the length sentence-transformers itself gives each model."""
    from sentence_transformers import SentenceTransformer

    for name, source in (
        (TINY_MODEL, "tokenizer_config.json"),
        (MINILM_MODEL, "sentence_bert_config.json"),
    ):
        report = tokens_report(tmp_path, snli_rows, model_root, base_model=name)
        tokens = report["tokens"]
        expected = SentenceTransformer(str(model_root / name), device="cpu").max_seq_length
        assert (tokens["max_seq_length"], tokens["max_seq_length_source"]) == (expected, source)
        lengths = model_lengths(model_root / name, texts_of(snli_rows))
        assert tokens["roles"]["train"]["max"] == max(lengths)
        assert tokens["roles"]["train"]["truncated"] == sum(n > expected for n in lengths)
        assert TRUNCATED_TEXTS not in by_code(report)


def test_max_seq_length_is_capped_like_the_worker(tmp_path: Path, model_root: Path) -> None:
    from worker.training.models import load_base_model

    report = tokens_report(tmp_path, triplets(30), model_root, max_seq_length=4096)
    worker = load_base_model(TINY_MODEL, [model_root], "cpu", 4096).max_seq_length
    assert report["tokens"]["max_seq_length"] == worker == 128
    assert report["tokens"]["max_seq_length_source"] == "config.json"


def test_a_few_truncated_texts_are_no_warning(tmp_path: Path, model_root: Path) -> None:
    # 1 long text of 300 (0.33%): counted, but under the 1% threshold.
    rows = triplets(100)
    rows[4]["positive"] = "word " * 200
    report = tokens_report(tmp_path, rows, model_root)
    assert report["tokens"]["roles"]["train"]["truncated"] == 1
    assert report["tokens"]["roles"]["train"]["truncated_share"] == round(1 / 300, 4)
    assert TRUNCATED_TEXTS not in by_code(report)


def test_only_a_sample_of_rows_is_tokenized(
    tmp_path: Path, model_root: Path, snli_rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens_module, "SAMPLE_ROWS", 40)
    report = tokens_report(tmp_path, snli_rows, model_root)
    train = report["tokens"]["roles"]["train"]
    assert (train["rows"], train["sampled_rows"], train["texts"]) == (300, 40, 120)
    assert report["tokens"]["sample_rows"] == 40


def test_a_hub_model_is_read_from_the_local_cache_only(
    tmp_path: Path, model_root: Path, hf_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    cached = tokens_report(tmp_path, triplets(30), model_root, base_model=HUB_MODEL)
    local = tokens_report(tmp_path, triplets(30), model_root)
    assert cached["tokens"]["roles"] == local["tokens"]["roles"]
    assert cached["skipped"] == []

    absent = tokens_report(tmp_path, triplets(30), model_root, base_model="nobody/absent")
    assert absent["tokens"] is None
    (skip,) = absent["skipped"]
    assert skip["field"] == "base_model" and "not in the API's Hugging Face cache" in skip["reason"]
    # The rest of the report is unaffected.
    assert absent["steps"] == local["steps"] and absent["holdout_rows"] == 2


def broken_model(model_root: Path, tmp_path: Path, name: str) -> Path:
    root = tmp_path / "models"
    shutil.copytree(model_root / TINY_MODEL, root / name)
    return root


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda folder: (folder / "tokenizer.json").unlink(), "no tokenizer.json"),
        (lambda folder: (folder / "tokenizer.json").write_text("{not json"), "could not be read"),
    ],
)
def test_an_unreadable_tokenizer_is_skipped(
    tmp_path: Path, model_root: Path, damage: Any, reason: str
) -> None:
    root = broken_model(model_root, tmp_path, "broken")
    damage(root / "broken")
    report = tokens_report(tmp_path, triplets(30), root, base_model="broken")
    assert report["tokens"] is None and not has_errors(report)
    (skip,) = report["skipped"]
    assert skip["field"] == "base_model" and reason in skip["reason"]
    assert str(tmp_path) not in skip["reason"]


def test_a_symlink_out_of_the_model_dir_is_refused(tmp_path: Path, model_root: Path) -> None:
    root = tmp_path / "models"
    root.mkdir()
    (root / "escape").symlink_to(model_root / TINY_MODEL)
    report = tokens_report(tmp_path, triplets(30), root, base_model="escape")
    assert report["tokens"] is None
    assert "outside the configured model directories" in report["skipped"][0]["reason"]


def test_a_failing_tokenizer_never_fails_the_preflight(
    tmp_path: Path, model_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("tokenizer crashed")

    monkeypatch.setattr("app.jobs.preflight.token_report", explode)
    report = tokens_report(tmp_path, triplets(30), model_root)
    assert report["tokens"] is None and report["steps"] is not None
    assert report["skipped"] == [
        {"field": "base_model", "reason": "token lengths failed: tokenizer crashed"}
    ]


def test_holdout_counts_match_the_worker_on_real_rows(tmp_path: Path) -> None:
    """SNLI repeats premises: the preflight's hold-out is the worker's, grouped by premise."""
    rows = read_jsonl(SNLI_TRIPLETS, limit=1200)
    train = jsonl(tmp_path / "snli.jsonl", rows)
    hp = {"epochs": 2, "batch_size": 16, "max_steps": None, "seed": 77}
    report = job_preflight(train=train, eval=None, test=None, has_eval=False, hyperparameters=hp)
    kept, held = split_rows(train.path, seed=77)
    assert held == len(held_out_indices([r["anchor"] for r in rows], 77))
    assert (report["train_rows"], report["holdout_rows"]) == (kept, held)
    assert report["steps"] == math.ceil(kept / 16) * 2


def test_overlap_ignores_held_out_training_rows(tmp_path: Path) -> None:
    rows = triplets(40)
    held = held_out_indices([r["anchor"] for r in rows], 42)
    assert len(held) == 2
    train = jsonl(tmp_path / "train.jsonl", rows)
    # One test row is a held-out training row (not trained on), one a trained-on row.
    trained = next(i for i in range(40) if i not in held)
    test = jsonl(tmp_path / "test.jsonl", [rows[held[0]], rows[trained], *triplets(3, "x")])
    hp = {**HP, "seed": 42}
    report = job_preflight(train=train, eval=None, test=test, has_eval=False, hyperparameters=hp)
    finding = by_code(report)[TRAIN_TEST_OVERLAP]
    assert finding["details"] == {"rows": 1, "anchors": 1, "of": 5}
    assert finding["examples"][0]["same_as_train_row"] == trained + 1
