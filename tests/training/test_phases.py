"""A run says where its time went: the phases it reports, in order, and seconds per phase."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rules.phases import RUN_PHASES, Phase
from tests.training.conftest import PAIR_COLUMNS, SpecFactory, local
from worker.training.phases import PhaseClock
from worker.training.pipeline import run
from worker.training.spec import Hyperparameters, Progress, TrainingResult

STEPS = 6


@pytest.fixture(scope="module")
def timed_run(
    tmp_path_factory: pytest.TempPathFactory, make_spec: SpecFactory, data_files: dict[str, Path]
) -> tuple[TrainingResult, list[tuple[Phase, float]], list[tuple[Progress, float]], float, float]:
    """A run with evaluations during training (every 2 steps) and a test set, with every phase
    and progress report stamped on the monotonic clock, and the run's start and end."""
    spec = make_spec(
        tmp_path_factory.mktemp("phases"),
        local(data_files["train_pairs"], PAIR_COLUMNS),
        eval=local(data_files["eval"]),
        test=local(data_files["test"]),
        hyperparameters=Hyperparameters(
            batch_size=8, learning_rate=1e-3, max_steps=STEPS, eval_steps=2
        ),
    )
    phases: list[tuple[Phase, float]] = []
    progress: list[tuple[Progress, float]] = []
    started = time.monotonic()
    result = run(
        spec,
        lambda p: progress.append((p, time.monotonic())),
        phases=lambda phase: phases.append((phase, time.monotonic())),
    )
    return result, phases, progress, started, time.monotonic()


def test_phases_are_reported_once_each_in_order(timed_run):
    _, phases, _, _, _ = timed_run
    assert [phase for phase, _ in phases] == list(RUN_PHASES)


def test_progress_shows_when_training_starts_before_the_first_step(timed_run):
    _, phases, progress, _, _ = timed_run
    training_at = dict(phases)[Phase.TRAINING]
    first, first_at = progress[0]
    assert (first.step, first.total_steps, first.loss) == (0, STEPS, None)
    assert first_at >= training_at
    # Reported before step 1 was.
    assert progress[1][0].step >= 1 and progress[1][1] >= first_at


def test_timings_cover_every_phase_and_sum_to_the_run(timed_run):
    result, phases, _, started, ended = timed_run
    assert set(result.timings) == {phase.value for phase in RUN_PHASES}
    assert all(seconds >= 0 for seconds in result.timings.values()), result.timings
    wall = ended - started
    # The clock starts after the arguments are checked and stops after saving: only the
    # return is outside it.
    assert sum(result.timings.values()) == pytest.approx(wall, abs=0.25)
    # The evaluations the trainer runs move time out of training (into evaluating_base for
    # the one before the first step, as the test set is not the eval set here), never in.
    reported = [at for _, at in phases] + [ended]
    spans = {phase: until - at for (phase, at), until in zip(phases, reported[1:], strict=True)}
    for phase in (Phase.LOADING_MODEL, Phase.LOADING_DATA, Phase.TRAINING, Phase.SAVING):
        assert result.timings[phase.value] <= spans[phase] + 0.05, phase
    assert result.timings[Phase.TRAINING.value] < spans[Phase.TRAINING]
    assert result.timings[Phase.EVALUATING_BASE.value] > spans[Phase.EVALUATING_BASE]
    # The final evaluation alone is evaluating's lower bound; the ones during training add.
    evaluating_at = dict(phases)[Phase.EVALUATING]
    saving_at = dict(phases)[Phase.SAVING]
    assert result.timings[Phase.EVALUATING.value] >= saving_at - evaluating_at - 0.01
    assert result.timings[Phase.EVALUATING.value] > saving_at - evaluating_at


def test_throughput_inputs_count_the_steps_this_run_trained(timed_run):
    result = timed_run[0]
    assert (result.trained_steps, result.batch_size) == (STEPS, 8)
    assert result.timings[Phase.TRAINING.value] > 0


def test_clock_moves_time_between_phases_without_creating_any():
    clock = PhaseClock()
    before = time.monotonic()
    clock.enter(Phase.TRAINING)
    time.sleep(0.05)
    clock.move(0.02, Phase.TRAINING, Phase.EVALUATING)
    clock.move(10.0, Phase.TRAINING, Phase.EVALUATING)  # never more than training has
    seconds = clock.stop()
    elapsed = time.monotonic() - before
    assert seconds[Phase.TRAINING.value] < 0.01  # only what passed after the last move
    assert seconds[Phase.EVALUATING.value] >= 0.05
    assert 0.05 <= sum(seconds.values()) <= elapsed


def test_phases_and_timings_come_back_from_a_run_on_two_processes(
    tmp_path: Path, make_spec: SpecFactory, data_files: dict[str, Path]
) -> None:
    """The main rank's phases reach the parent through the run folder, in order, before the
    result (with the main rank's timings) does."""
    from worker.launch import run_training

    spec = make_spec(
        tmp_path,
        local(data_files["train_pairs"], PAIR_COLUMNS),
        eval=local(data_files["eval"]),
        hyperparameters=Hyperparameters(batch_size=8, learning_rate=1e-3, max_steps=2),
    )
    phases: list[Phase] = []
    progress: list[Progress] = []
    result = run_training(
        spec,
        progress.append,
        None,
        None,
        devices=2,
        job_id="job",
        attempt=1,
        work_dir=tmp_path / "work",
        phases=phases.append,
    )
    assert phases == list(RUN_PHASES)
    assert progress[0].step == 0 and progress[-1].step == 2
    assert set(result.timings) == {phase.value for phase in RUN_PHASES}
    assert result.timings[Phase.TRAINING.value] > 0
    assert (result.trained_steps, result.batch_size) == (2, 8)
