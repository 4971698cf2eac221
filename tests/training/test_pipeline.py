"""The real pipeline, end to end, on the tiny model and real SNLI rows."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from tests.support.tiny_model import read_jsonl
from worker.training.errors import (
    DatasetInvalid,
    ModelNotFound,
    PrecisionUnsupported,
    TrainingError,
)
from worker.training.evaluation import build_triplet_evaluator, evaluate
from worker.training.pipeline import METRICS_FILE, run
from worker.training.spec import METRIC_KEYS, Hyperparameters, LocalData, Progress

TRIPLETS = ("anchor", "positive", "negative")
PAIRS = ("anchor", "positive")


def local(path: Path, columns: tuple[str, ...] = TRIPLETS) -> LocalData:
    return LocalData(path=path, format="jsonl", columns=columns)


def no_progress(progress: Progress) -> None:
    raise AssertionError(f"no training should have happened, got {progress}")


def triplet_metrics(model: SentenceTransformer, path: Path, name: str) -> dict[str, float]:
    """Evaluate `model` independently of the pipeline, on a triplet JSONL file."""
    from datasets import Dataset

    rows = read_jsonl(path)
    data = Dataset.from_list(rows).select_columns(list(TRIPLETS))
    return evaluate(model, build_triplet_evaluator(data, name))


def test_progress_is_reported_every_step_with_the_right_total(tiny_run):
    max_steps = tiny_run.spec.hyperparameters.max_steps
    events = tiny_run.events
    assert events, "no progress was reported"
    assert {e.total_steps for e in events} == {max_steps}
    steps = [e.step for e in events]
    assert steps == sorted(steps), "steps went backwards"
    # Step 0 when training begins (progress shows before the first step), then every step.
    assert steps[0] == 0
    assert sorted(set(steps)) == list(range(0, max_steps + 1))
    epochs = [e.epoch for e in events]
    assert epochs == sorted(epochs) and epochs[-1] > 0
    last = events[-1]
    assert last.step == max_steps
    assert last.loss is not None and math.isfinite(last.loss) and last.loss > 0
    assert tiny_run.result.total_steps == max_steps


def test_result_describes_the_run(tiny_run):
    import torch

    result = tiny_run.result
    assert result.model_dir == tiny_run.spec.output_dir
    assert result.train_rows == 96
    if torch.cuda.is_available():  # the tests also run on GPU machines
        assert result.device == "cuda" and result.precision in ("bf16", "fp16")
    else:
        assert (result.device, result.precision) == ("cpu", "fp32")


def test_metrics_have_exactly_the_metric_keys_in_range(tiny_run):
    metrics = tiny_run.result.metrics
    assert metrics is not None
    assert set(metrics) == {"base", "fine_tuned"}
    for which in ("base", "fine_tuned"):
        values = metrics[which]
        assert tuple(values) == METRIC_KEYS
        for key, value in values.items():
            assert isinstance(value, float), key
            assert 0.0 <= value <= 1.0, (which, key, value)
        four = [values[k] for k in METRIC_KEYS if k != "max_accuracy"]
        assert values["max_accuracy"] == pytest.approx(max(four))


def test_saved_folder_is_the_fine_tuned_model(tiny_run, tiny_models, data_files):
    out = tiny_run.result.model_dir
    for name in ("model.safetensors", "README.md", METRICS_FILE, "modules.json", "tokenizer.json"):
        assert (out / name).is_file(), name

    saved = SentenceTransformer(str(out), device="cpu")
    base = SentenceTransformer(str(tiny_models / "tiny"), device="cpu")
    sentences = ["A man is playing a guitar.", "Two dogs run through a field."]
    saved_emb, base_emb = saved.encode(sentences), base.encode(sentences)
    assert saved_emb.shape == (2, 64)
    assert not np.allclose(saved_emb, base_emb), "training did not change the weights"

    # The metrics were computed on the test data (not eval) with the model that was saved.
    assert triplet_metrics(saved, data_files["test"], "check") == pytest.approx(
        tiny_run.result.metrics["fine_tuned"], abs=1e-6
    )
    assert triplet_metrics(base, data_files["test"], "check") == pytest.approx(
        tiny_run.result.metrics["base"], abs=1e-6
    )


def test_metrics_json_matches_the_result(tiny_run):
    written = json.loads((tiny_run.result.model_dir / METRICS_FILE).read_text())
    assert written["base_model"] == "tiny"
    assert written["total_steps"] == tiny_run.result.total_steps
    assert written["base"] == tiny_run.result.metrics["base"]
    assert written["fine_tuned"] == tiny_run.result.metrics["fine_tuned"]


def test_model_card_does_not_leak_server_paths(tiny_run, tiny_models):
    card = (tiny_run.result.model_dir / "README.md").read_text()
    assert "MultipleNegativesRankingLoss" in card
    assert str(tiny_models) not in card
    assert str(tiny_run.spec.work_dir) not in card


def test_eval_data_is_evaluated_when_there_is_no_test_data(tmp_path, make_spec, data_files):
    spec = make_spec(
        tmp_path,
        local(data_files["train_triplets"]),
        eval=local(data_files["eval"]),
        hyperparameters=Hyperparameters(batch_size=8, learning_rate=1e-3, max_steps=2),
    )
    result = run(spec, lambda p: None)
    assert result.metrics is not None
    saved = SentenceTransformer(str(result.model_dir), device="cpu")
    assert triplet_metrics(saved, data_files["eval"], "check") == pytest.approx(
        result.metrics["fine_tuned"], abs=1e-6
    )


def test_no_eval_or_test_data_gives_no_metrics(tmp_path, make_spec, data_files):
    events: list[Progress] = []
    spec = make_spec(tmp_path, local(data_files["train_pairs"], PAIRS))
    result = run(spec, events.append)
    # Pairs are held out as the eval set (for the loss), but without negatives there are no
    # triplets to score on.
    assert result.holdout is not None and result.eval_rows == 5
    assert result.metrics is None and result.evaluated_on is None
    assert result.total_steps == 3 and events[-1].step == 3
    written = json.loads((result.model_dir / METRICS_FILE).read_text())
    assert written == {"base": None, "fine_tuned": None, "base_model": "tiny", "total_steps": 3}
    assert SentenceTransformer(str(result.model_dir), device="cpu").encode(["a"]).shape == (1, 64)


def test_epochs_without_max_steps_cover_the_data(tmp_path, make_spec, snli_rows):
    from tests.support.tiny_model import write_jsonl

    train = write_jsonl(tmp_path / "train.jsonl", snli_rows[:40])
    events: list[Progress] = []
    spec = make_spec(
        tmp_path,
        local(train),
        hyperparameters=Hyperparameters(batch_size=8, epochs=2, max_steps=None),
    )
    result = run(spec, events.append)
    # 40 rows less 2 held out (no eval data) in batches of 8, twice.
    assert result.holdout is not None and result.train_rows == 38
    assert result.total_steps == 10
    assert events[-1].step == 10 and events[-1].epoch == pytest.approx(2.0)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_on_cpu_is_refused_before_loading(
    tmp_path, make_spec, data_files, precision, monkeypatch
):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    spec = make_spec(
        tmp_path,
        local(data_files["train_pairs"], PAIRS),
        base_model="no-such-model-would-be-loaded",
        hyperparameters=Hyperparameters(precision=precision),
    )
    with pytest.raises(PrecisionUnsupported) as info:
        run(spec, no_progress)
    assert info.value.code == "precision_unsupported"
    assert isinstance(info.value, TrainingError)
    assert precision in info.value.message
    assert not spec.output_dir.exists()


def test_pair_data_as_test_set_is_invalid(tmp_path, make_spec, data_files):
    spec = make_spec(
        tmp_path,
        local(data_files["train_pairs"], PAIRS),
        test=local(data_files["test_pairs"], PAIRS),
    )
    with pytest.raises(DatasetInvalid) as info:
        run(spec, no_progress)
    assert info.value.code == "dataset_invalid"
    assert "test" in info.value.message and "triplets" in info.value.message
    assert not spec.output_dir.exists()


def test_unknown_model_is_model_not_found(tmp_path, make_spec, data_files, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # (the package fixture also patches the libraries)
    spec = make_spec(
        tmp_path,
        local(data_files["train_pairs"], PAIRS),
        base_model="embedtune-tests/no-such-model",
    )
    with pytest.raises(ModelNotFound) as info:
        run(spec, no_progress)
    message = info.value.message
    assert info.value.code == "model_not_found"
    assert "embedtune-tests/no-such-model" in message
    assert "not a folder in the configured model directories" in message
    assert "Hugging Face Hub could not load it" in message
    assert str(tmp_path) not in message and "/root" not in message


def test_unknown_local_data_column_is_invalid(tmp_path, make_spec, data_files):
    spec = make_spec(tmp_path, local(data_files["train_pairs"], ("anchor", "answer")))
    with pytest.raises(DatasetInvalid, match="answer"):
        run(spec, no_progress)
