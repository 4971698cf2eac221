"""Evaluation while training: the MetricPoints a run records, their cadence and their keys."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from sentence_transformers import SentenceTransformer
from transformers import TrainerControl

from tests.support.tiny_model import read_jsonl
from tests.training.conftest import PAIR_COLUMNS, local
from worker.training.callbacks import MetricsCallback
from worker.training.evaluation import build_triplet_evaluator, evaluate
from worker.training.pipeline import eval_steps_for, logging_steps_for, run
from worker.training.spec import METRIC_KEYS, Hyperparameters, MetricPoint

TRAIN_KEYS = {"loss", "learning_rate", "grad_norm"}
EVAL_KEYS = {"loss", *METRIC_KEYS}


def independent_metrics(model: SentenceTransformer, path: Path) -> dict[str, float]:
    from datasets import Dataset

    data = Dataset.from_list(read_jsonl(path)).select_columns(["anchor", "positive", "negative"])
    return evaluate(model, build_triplet_evaluator(data, "check"))


def steps(points: list[MetricPoint]) -> list[int]:
    return [p.step for p in points]


def test_a_train_point_at_every_logging_step(tiny_run):
    result = tiny_run.result
    assert result.logging_steps == 1  # a 6-step run logs every step
    train = tiny_run.series("train")
    assert steps(train) == list(range(1, result.total_steps + 1))
    lr = tiny_run.spec.hyperparameters.learning_rate
    for point in train:
        assert set(point.values) == TRAIN_KEYS
        assert point.values["loss"] is not None and point.values["loss"] > 0
        assert 0 <= point.values["learning_rate"] <= lr  # type: ignore[operator]
        assert math.isfinite(point.values["grad_norm"])  # type: ignore[arg-type]
    epochs = [p.epoch for p in train]
    assert epochs == sorted(epochs) and epochs[0] > 0
    # Linear warmup then linear decay: the rate rises from 0, then falls.
    rates = [p.values["learning_rate"] for p in train]
    assert rates[0] == 0 and max(rates) > 0 and rates[-1] < max(rates)  # type: ignore[operator]
    # The progress reporter saw the same losses at the same steps.
    progress = {e.step: e.loss for e in tiny_run.events if e.loss is not None}
    assert progress == {p.step: p.values["loss"] for p in train}


def test_eval_points_from_the_base_model_to_the_last_step(tiny_run, tiny_models, data_files):
    result = tiny_run.result
    evals = tiny_run.series("eval")
    # eval_steps 1 (given): every step, plus the base model at step 0.
    assert result.eval_steps == 1
    assert steps(evals) == list(range(0, result.total_steps + 1))
    assert evals[0].epoch == 0
    for point in evals:
        assert set(point.values) == EVAL_KEYS
        assert point.values["loss"] is not None and point.values["loss"] > 0
        for key in METRIC_KEYS:
            assert 0 <= point.values[key] <= 1  # type: ignore[operator]

    # Evaluated on the eval set (not the test set): step 0 is the base model, the last step the
    # model that was saved.
    base = SentenceTransformer(str(tiny_models / "tiny"), device="cpu")
    saved = SentenceTransformer(str(result.model_dir), device="cpu")
    first = {k: evals[0].values[k] for k in METRIC_KEYS}
    last = {k: evals[-1].values[k] for k in METRIC_KEYS}
    assert first == pytest.approx(independent_metrics(base, data_files["eval"]), abs=1e-6)
    assert last == pytest.approx(independent_metrics(saved, data_files["eval"]), abs=1e-6)
    assert evals[-1].values["loss"] != evals[0].values["loss"]


@pytest.mark.parametrize(
    ("max_steps", "eval_steps", "expected"),
    [
        (7, 3, [0, 3, 6, 7]),  # every 3 steps, and the last step
        # The default's steps, given: ceil(20 / 10) = 2, ten evaluations. Without eval_steps the
        # budget skips some (tests/training/test_eval_cost.py).
        (20, 2, [0, *range(2, 21, 2)]),
    ],
)
def test_eval_steps_sets_the_cadence(
    tmp_path, make_spec, data_files, max_steps, eval_steps, expected
):
    points: list[MetricPoint] = []
    spec = make_spec(
        tmp_path,
        local(data_files["train_triplets"]),
        eval=local(data_files["eval"]),
        hyperparameters=Hyperparameters(
            batch_size=8, learning_rate=1e-3, max_steps=max_steps, eval_steps=eval_steps
        ),
    )
    result = run(spec, lambda p: None, points.append)
    assert result.eval_steps == (eval_steps or 2)
    assert steps([p for p in points if p.kind == "eval"]) == expected
    assert steps([p for p in points if p.kind == "train"]) == list(range(1, max_steps + 1))


def test_default_cadence_is_about_ten_evaluations():
    def hp(**kw: object) -> Hyperparameters:
        return Hyperparameters(**{"batch_size": 10, **kw})  # type: ignore[arg-type]

    assert eval_steps_for(hp(max_steps=300), 0) == 30
    assert eval_steps_for(hp(max_steps=305), 0) == 31  # 9 evaluations + the last step
    assert eval_steps_for(hp(max_steps=6), 0) == 1
    assert eval_steps_for(hp(epochs=2), 995) == 20  # 100 batches x 2 epochs
    assert eval_steps_for(hp(max_steps=300, eval_steps=7), 0) == 7
    for total in range(1, 2000):
        every = eval_steps_for(hp(max_steps=total), 0)
        assert math.ceil(total / every) <= 10, total  # never more than ten (+ the base model)
        if total >= 100:
            assert math.ceil(total / every) >= 9, total
    assert logging_steps_for(hp(max_steps=300), 0) == 3


def test_pair_eval_sets_give_the_loss_only(tmp_path, make_spec, data_files):
    """Pairs held out of pair training data have no negatives: eval points carry the loss."""
    points: list[MetricPoint] = []
    spec = make_spec(
        tmp_path,
        local(data_files["train_pairs"], PAIR_COLUMNS),
        hyperparameters=Hyperparameters(
            batch_size=8, learning_rate=1e-3, max_steps=3, eval_steps=1
        ),
    )
    result = run(spec, lambda p: None, points.append)
    evals = [p for p in points if p.kind == "eval"]
    assert result.holdout is not None and result.eval_rows == 5
    assert steps(evals) == [0, 1, 2, 3]
    for point in evals:
        assert set(point.values) == {"loss"}
        assert point.values["loss"] is not None and point.values["loss"] >= 0
    assert result.metrics is None and result.evaluated_on is None


def test_without_an_eval_set_nothing_is_evaluated_during_training(
    tmp_path, make_spec, snli_rows, data_files
):
    from tests.support.tiny_model import write_jsonl

    small = write_jsonl(tmp_path / "small.jsonl", snli_rows[:19])  # too few rows to hold out
    points: list[MetricPoint] = []
    spec = make_spec(tmp_path, local(small), test=local(data_files["test"]))
    result = run(spec, lambda p: None, points.append)
    assert result.holdout is None and result.eval_rows is None and result.eval_steps is None
    assert result.train_rows == 19
    assert [p.kind for p in points] == ["train"] * 3
    assert result.evaluated_on == "test" and result.metrics is not None


def _state(step: int, max_steps: int, epoch: float = 0.5) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, max_steps=max_steps, epoch=epoch)


def test_callback_logs_the_last_step_and_ignores_other_logs():
    points: list[MetricPoint] = []
    callback = MetricsCallback(points.append, "holdout")
    args = SimpleNamespace()

    control = TrainerControl()
    callback.on_step_end(args, _state(4, 10), control)  # type: ignore[arg-type]
    assert not control.should_log
    callback.on_step_end(args, _state(10, 10), control)  # type: ignore[arg-type]
    assert control.should_log

    # Evaluation logs and the end-of-training summary are not training steps.
    callback.on_log(args, _state(10, 10), control, logs={"eval_loss": 1.0})  # type: ignore[arg-type]
    callback.on_log(args, _state(10, 10), control, logs={"train_loss": 1.0})  # type: ignore[arg-type]
    assert points == []

    logs = {"loss": 2.5, "learning_rate": 1e-5, "grad_norm": float("nan")}
    callback.on_log(args, _state(10, 10, 1.0), control, logs=logs)  # type: ignore[arg-type]
    assert points == [
        MetricPoint("train", 10, 1.0, {"loss": 2.5, "learning_rate": 1e-5, "grad_norm": None})
    ]

    metrics = {
        "eval_loss": 1.5,
        "eval_runtime": 0.3,
        **{f"eval_holdout_{k}": 0.5 for k in METRIC_KEYS},
    }
    callback.on_evaluate(args, _state(0, 10, 0.0), control, metrics=metrics)  # type: ignore[arg-type]
    assert points[-1] == MetricPoint("eval", 0, 0.0, {"loss": 1.5, **{k: 0.5 for k in METRIC_KEYS}})
    # An evaluator named "eval" reports eval_cosine_accuracy (the trainer does not re-prefix).
    named_eval = MetricsCallback(points.append, "eval")
    metrics = {"eval_loss": 1.0, **{f"eval_{k}": 0.25 for k in METRIC_KEYS}}
    named_eval.on_evaluate(args, _state(5, 10), control, metrics=metrics)  # type: ignore[arg-type]
    assert points[-1].values == {"loss": 1.0, **{k: 0.25 for k in METRIC_KEYS}}
