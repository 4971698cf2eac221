"""What an evaluation during training costs: one encoding pass, the eval loss folded into it, no
second scoring of the same data when the final metrics come from the eval set, and (without the
user's eval_steps) no more evaluations than fit in a tenth of the training time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from sentence_transformers import SentenceTransformer

from tests.support.tiny_model import read_jsonl, write_jsonl
from tests.training.conftest import local
from worker.training import pipeline
from worker.training.callbacks import EVAL_TIME_SHARE, EvaluationBudget
from worker.training.evaluation import (
    EVAL_LOSS_KEY,
    build_triplet_evaluator,
    build_triplet_loss_evaluator,
    eval_loss_batches,
    evaluate,
    same_triplets,
)
from worker.training.pipeline import run
from worker.training.spec import METRIC_KEYS, Hyperparameters, MetricPoint


def triplets(path: Path):  # type: ignore[no-untyped-def]
    from datasets import Dataset

    return Dataset.from_list(read_jsonl(path)).select_columns(["anchor", "positive", "negative"])


@pytest.mark.parametrize("batch_size", [8, 16])
def test_folded_eval_loss_is_the_trainers_eval_loss(tmp_path, tiny_models, data_files, batch_size):
    """The loss computed from the evaluator's embeddings equals the trainer's own eval-loss pass
    (same no-duplicates batches, same MNR loss) on the same model."""
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )

    model = SentenceTransformer(str(tiny_models / "tiny"), device="cpu")
    data = triplets(data_files["eval"])
    loss = MultipleNegativesRankingLoss(model)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "trainer"),
        per_device_eval_batch_size=batch_size,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        seed=7,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=data, eval_dataset=data, loss=loss
    )
    expected = trainer.evaluate()["eval_loss"]

    evaluator = build_triplet_loss_evaluator(data, "eval", loss, batch_size, seed=7, batch_size=64)
    output = evaluator(model)
    assert output[EVAL_LOSS_KEY] == pytest.approx(expected, rel=1e-5)
    # The accuracies are those of a plain TripletEvaluator, and last_values holds both.
    plain = evaluate(model, build_triplet_evaluator(data, "eval"))
    assert evaluator.last_values == {EVAL_LOSS_KEY: output[EVAL_LOSS_KEY], **plain}  # type: ignore[attr-defined]
    assert tuple(evaluator.last_values)[1:] == METRIC_KEYS  # type: ignore[attr-defined]


def test_eval_loss_batches_cover_every_row_once(data_files):
    data = triplets(data_files["eval"])
    batches = eval_loss_batches(data, 8, seed=42)
    assert sorted(i for batch in batches for i in batch) == list(range(len(data)))
    assert all(len(batch) <= 8 for batch in batches)
    assert batches == eval_loss_batches(data, 8, seed=42)  # fixed: evaluations are comparable


def test_same_triplets(data_files):
    data = triplets(data_files["eval"])
    evaluator = build_triplet_evaluator(data, "eval")
    assert same_triplets(evaluator, data)
    assert not same_triplets(evaluator, data.select(range(len(data) - 1)))
    assert not same_triplets(evaluator, triplets(data_files["test"]))
    renamed = data.rename_columns({"anchor": "q", "positive": "p", "negative": "n"})
    assert same_triplets(evaluator, renamed)


class Counter:
    def __init__(self) -> None:
        self.evaluator_calls = 0
        self.loss_batches = 0


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Counts TripletEvaluator runs and batches of the trainer's own eval-loss pass."""
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.evaluation import TripletEvaluator

    counter = Counter()
    evaluator_call = TripletEvaluator.__call__
    prediction_step = SentenceTransformerTrainer.prediction_step

    def counting_call(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        counter.evaluator_calls += 1
        return evaluator_call(self, *args, **kwargs)

    def counting_step(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        counter.loss_batches += 1
        return prediction_step(self, *args, **kwargs)

    monkeypatch.setattr(TripletEvaluator, "__call__", counting_call)
    monkeypatch.setattr(SentenceTransformerTrainer, "prediction_step", counting_step)
    return counter


def test_eval_set_that_is_the_test_set_is_scored_once_per_eval_point(
    tmp_path, make_spec, data_files, tiny_models, counted
):
    """eval == test: the base score is the step-0 eval point and the fine-tuned score the last
    one; every evaluation is one evaluator run and the trainer runs no eval-loss pass."""
    points: list[MetricPoint] = []
    spec = make_spec(
        tmp_path,
        local(data_files["train_triplets"]),
        eval=local(data_files["eval"]),
        test=local(data_files["eval"]),  # the same file, loaded twice
        hyperparameters=Hyperparameters(
            batch_size=8, learning_rate=1e-3, max_steps=7, eval_steps=3
        ),
    )
    result = run(spec, lambda p: None, points.append)
    evals = [p for p in points if p.kind == "eval"]
    assert [p.step for p in evals] == [0, 3, 6, 7]
    assert counted.evaluator_calls == 4  # base (step 0), steps 3 and 6, fine-tuned (step 7)
    assert counted.loss_batches == 0
    assert result.evaluated_on == "test" and result.metrics is not None

    assert {k: evals[0].values[k] for k in METRIC_KEYS} == result.metrics["base"]
    assert {k: evals[-1].values[k] for k in METRIC_KEYS} == result.metrics["fine_tuned"]
    last_train = [p for p in points if p.kind == "train"][-1]
    assert evals[0].epoch == 0 and evals[-1].epoch == last_train.epoch
    for point in evals:
        assert list(point.values) == ["loss", *METRIC_KEYS]
        assert point.values["loss"] is not None and point.values["loss"] > 0
    assert evals[0].values["loss"] != evals[-1].values["loss"]
    # The series is in order: step 0 first, the last eval point after the last train point.
    assert points[0] == evals[0]
    assert points[-1] == evals[-1]
    assert max(p.step for p in points if p.kind == "train") == 7

    # The fine-tuned score is that of the saved model, and step 0 is the base model.
    saved = SentenceTransformer(str(result.model_dir), device="cpu")
    base = SentenceTransformer(str(tiny_models / "tiny"), device="cpu")
    data = triplets(data_files["eval"])
    assert evaluate(saved, build_triplet_evaluator(data, "x")) == pytest.approx(
        result.metrics["fine_tuned"], abs=1e-6
    )
    assert evaluate(base, build_triplet_evaluator(data, "x")) == pytest.approx(
        result.metrics["base"], abs=1e-6
    )


def test_a_different_test_set_keeps_the_trainers_step_0_evaluation(
    tmp_path, make_spec, data_files, counted
):
    points: list[MetricPoint] = []
    spec = make_spec(
        tmp_path,
        local(data_files["train_triplets"]),
        eval=local(data_files["eval"]),
        test=local(data_files["test"]),
        hyperparameters=Hyperparameters(
            batch_size=8, learning_rate=1e-3, max_steps=4, eval_steps=2
        ),
    )
    run(spec, lambda p: None, points.append)
    assert [p.step for p in points if p.kind == "eval"] == [0, 2, 4]
    # Test set: base and fine-tuned; eval set: steps 0, 2 and 4; no separate eval-loss pass.
    assert counted.evaluator_calls == 5
    assert counted.loss_batches == 0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def simulate(
    budget: EvaluationBudget,
    clock: FakeClock,
    max_steps: int,
    every: int,
    step_s: float | Callable[[int], float],
    eval_s: float,
    saves: dict[int, float] | None = None,
) -> list[int]:
    """Drive `budget` as the trainer does (steps of step_s, an evaluation asked for every
    `every` steps and at the last, a checkpoint save after the steps in `saves`, taking that
    long); the steps it evaluated at."""
    from transformers import TrainerControl

    args = SimpleNamespace()
    budget.on_train_begin(
        args, SimpleNamespace(global_step=0, max_steps=max_steps), TrainerControl()
    )  # type: ignore[arg-type]
    evaluated = []
    for step in range(1, max_steps + 1):
        clock.now += step_s(step) if callable(step_s) else step_s
        state = SimpleNamespace(global_step=step, max_steps=max_steps)
        control = TrainerControl()
        control.should_evaluate = step % every == 0 or step == max_steps
        budget.on_step_end(args, state, control)  # type: ignore[arg-type]
        if control.should_evaluate:
            clock.now += eval_s
            evaluated.append(step)
            budget.on_evaluate(args, state, control)  # type: ignore[arg-type]
        if saves and step in saves:
            clock.now += saves[step]
            budget.on_save(args, state, control)  # type: ignore[arg-type]
    return evaluated


def test_the_budget_allows_evaluations_that_fit_in_a_tenth_of_training():
    clock = FakeClock()
    budget = EvaluationBudget(first_estimate_s=2.0, clock=clock)
    # 1 s steps, 2 s evaluations, asked for every 2 steps: each needs 20 s of training to
    # itself. The last step is the fine-tuned model's evaluation, not budgeted.
    evaluated = simulate(budget, clock, max_steps=70, every=2, step_s=1.0, eval_s=2.0)
    assert evaluated == [20, 40, 60, 70]
    assert budget.train_s == pytest.approx(70.0)
    assert budget.eval_s == pytest.approx(6.0)
    assert budget.eval_s <= EVAL_TIME_SHARE * budget.train_s
    asked = list(range(2, 70, 2))
    assert [step for step, *_ in budget.decisions] == asked
    assert [step for step, ok, *_ in budget.decisions if ok] == [20, 40, 60]


def test_the_twelve_step_job_of_issue_12_evaluates_before_and_after_only():
    """12 steps, evaluated every 2 before (7 evaluations with step 0): an evaluation about as
    long as three steps leaves no room for any during training."""
    clock = FakeClock()
    budget = EvaluationBudget(first_estimate_s=3.0, clock=clock)
    assert simulate(budget, clock, max_steps=12, every=2, step_s=1.0, eval_s=3.0) == [12]
    assert budget.eval_s == 0


def test_the_estimate_follows_the_latest_evaluation_and_saves_are_not_training():
    clock = FakeClock()
    # The base model's scoring overestimates (a larger test set, say): the first evaluation
    # waits for 50 s of training (5 s fits), then the measured 1 s is the estimate and the next
    # one fits at once (1 + 1 <= 5.5).
    budget = EvaluationBudget(first_estimate_s=5.0, clock=clock)
    # 100 s checkpoint saves after steps 10 and 30 count as neither.
    evaluated = simulate(
        budget, clock, max_steps=60, every=5, step_s=1.0, eval_s=1.0, saves={10: 100, 30: 100}
    )
    assert evaluated == [50, 55, 60]
    assert budget.estimate_s == pytest.approx(1.0)
    assert budget.train_s == pytest.approx(60.0)
    # Cheaper evaluations are asked for on the same cadence as soon as they fit.
    clock = FakeClock()
    budget = EvaluationBudget(first_estimate_s=1.0, clock=clock)
    assert simulate(budget, clock, max_steps=60, every=5, step_s=1.0, eval_s=1.0) == [
        10,
        20,
        30,
        40,
        50,
        60,
    ]
    # No estimate (a resumed run without a base evaluation): one evaluation, to measure.
    clock = FakeClock()
    budget = EvaluationBudget(first_estimate_s=None, clock=clock)
    assert simulate(budget, clock, max_steps=30, every=5, step_s=1.0, eval_s=4.0)[:2] == [5, 30]


def test_a_small_real_job_evaluates_far_fewer_times_than_it_could(
    tmp_path, make_spec, data_files, snli_rows, monkeypatch
):
    """The tiny model, 20 steps of 4 triplets, a 200-triplet eval set (one evaluation encodes
    600 texts, a step 12 forward and backward): the default cadence asks every 2 steps, and the
    budget lets through only what fits in a tenth of the measured training time. The margin is
    wide (an evaluation costs about 15 steps here, so none fits in 20 steps' tenth), and every
    decision is checked against the figures it was made from."""
    budgets: list[EvaluationBudget] = []

    class Kept(EvaluationBudget):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, **kwargs)
            budgets.append(self)

    monkeypatch.setattr(pipeline, "EvaluationBudget", Kept)
    points: list[MetricPoint] = []
    spec = make_spec(
        tmp_path,
        local(data_files["train_triplets"]),
        eval=local(write_jsonl(tmp_path / "eval.jsonl", snli_rows[:200])),
        hyperparameters=Hyperparameters(batch_size=4, learning_rate=1e-3, max_steps=20),
    )
    result = run(spec, lambda p: None, points.append)
    (budget,) = budgets
    assert result.eval_steps == 2  # the steps the trainer asks at: ceil(20 / 10)
    assert [step for step, *_ in budget.decisions] == list(range(2, 20, 2))
    for _, allowed, eval_s, estimate_s, train_s in budget.decisions:
        assert estimate_s is not None and estimate_s > 0  # the base scoring gave the first
        assert allowed == (eval_s + estimate_s <= EVAL_TIME_SHARE * train_s)
    evals = [p.step for p in points if p.kind == "eval"]
    allowed_steps = [step for step, ok, *_ in budget.decisions if ok]
    assert evals == [0, *allowed_steps, 20]
    assert len(allowed_steps) <= 2, budget.decisions  # of 9 asked for


def test_the_users_eval_steps_are_obeyed_exactly(tmp_path, make_spec, data_files, snli_rows):
    """With eval_steps given there is no budget: every 5 steps, however costly."""
    points: list[MetricPoint] = []
    spec = make_spec(
        tmp_path,
        local(data_files["train_triplets"]),
        eval=local(write_jsonl(tmp_path / "eval.jsonl", snli_rows[:200])),
        hyperparameters=Hyperparameters(
            batch_size=4, learning_rate=1e-3, max_steps=10, eval_steps=5
        ),
    )
    run(spec, lambda p: None, points.append)
    assert [p.step for p in points if p.kind == "eval"] == [0, 5, 10]
