"""Checkpoints, stop requests and resume, on real runs of the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sentence_transformers import SentenceTransformer

from tests.training.conftest import local
from worker.training.checkpoints import COMPLETE_MARKER, latest_complete
from worker.training.errors import TrainingStopped
from worker.training.pipeline import run
from worker.training.spec import CheckpointPolicy, Hyperparameters, Progress, StopReason

STEPS = 12  # 96 training rows at batch 8: one epoch


class Control:
    """A RunControl that asks to stop with `reason` once `at_step` steps were done."""

    def __init__(self, reason: StopReason | None = None, at_step: int = 0) -> None:
        self.reason = reason
        self.at_step = at_step
        self.steps = 0
        self.saved: list[int] = []

    def stop_requested(self) -> StopReason | None:
        self.steps += 1
        return self.reason if self.reason and self.steps >= self.at_step else None

    def checkpoint_saved(self, step: int, path: Path) -> None:
        assert (path / COMPLETE_MARKER).is_file()
        self.saved.append(step)


def _spec(make_spec, tmp: Path, data_files, checkpoints: CheckpointPolicy | None):
    return make_spec(
        tmp,
        local(data_files["train_triplets"]),
        test=local(data_files["test"]),
        hyperparameters=Hyperparameters(batch_size=8, learning_rate=1e-3, epochs=1, seed=7),
        checkpoints=checkpoints,
    )


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    model = SentenceTransformer(str(model_dir), device="cpu")
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_handed_back_run_resumes_to_the_same_steps_and_model(tmp_path, make_spec, data_files):
    # Uninterrupted reference run.
    whole = run(_spec(make_spec, tmp_path / "whole", data_files, None), lambda p: None)
    assert whole.total_steps == STEPS

    root = tmp_path / "checkpoints"
    first = Control("handed_back", at_step=5)
    policy = CheckpointPolicy(dir=root / "attempt-1", every_s=3600, every_steps=2)
    with pytest.raises(TrainingStopped) as stopped:
        run(_spec(make_spec, tmp_path / "a1", data_files, policy), lambda p: None, control=first)
    assert stopped.value.reason == "handed_back" and stopped.value.step == 5
    # Every 2 steps, plus the checkpoint of the hand-back itself; the last two are kept.
    assert first.saved == [2, 4, 5]
    assert sorted(p.name for p in (root / "attempt-1").glob("checkpoint-*")) == [
        "checkpoint-4",
        "checkpoint-5",
    ]
    resume_from = latest_complete(root)
    assert resume_from == root / "attempt-1" / "checkpoint-5"

    progress: list[Progress] = []
    second = Control()
    policy2 = CheckpointPolicy(
        dir=root / "attempt-2", every_s=3600, every_steps=2, resume_from=resume_from
    )
    resumed = run(
        _spec(make_spec, tmp_path / "a2", data_files, policy2), progress.append, control=second
    )
    # The resumed attempt runs only the remaining steps, to the same total.
    assert resumed.total_steps == whole.total_steps == STEPS
    # The checkpoint's step when training begins again, then the steps after it.
    assert progress[0].step == 5 and progress[1].step == 6 and progress[-1].step == STEPS
    assert second.saved == [6, 8, 10]  # never a checkpoint at the last step
    # Optimizer, scheduler and RNG state came back: the model is the uninterrupted run's.
    expected, got = _weights(whole.model_dir), _weights(resumed.model_dir)
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5)
    assert resumed.metrics is not None and whole.metrics is not None
    assert resumed.metrics["fine_tuned"] == pytest.approx(whole.metrics["fine_tuned"], abs=1e-6)


# "timeout" takes the same path; the fault tests run it end to end.
@pytest.mark.parametrize("reason", ["cancelled", "lease_lost"])
def test_other_stops_end_the_run_without_a_checkpoint(tmp_path, make_spec, data_files, reason):
    policy = CheckpointPolicy(dir=tmp_path / "ck", every_s=3600)
    control = Control(reason, at_step=3)
    with pytest.raises(TrainingStopped) as stopped:
        run(_spec(make_spec, tmp_path, data_files, policy), lambda p: None, control=control)
    assert stopped.value.reason == reason and stopped.value.step == 3
    assert stopped.value.checkpoint is None and control.saved == []
    assert not (tmp_path / "out").exists()  # no model is saved for a stopped run


def test_incomplete_checkpoints_are_never_resumed_from(tmp_path):
    done = tmp_path / "attempt-1" / "checkpoint-4"
    done.mkdir(parents=True)
    (done / COMPLETE_MARKER).write_text("4")
    # Killed while saving: the folder of a later step exists, without the marker.
    (tmp_path / "attempt-2" / "checkpoint-8").mkdir(parents=True)
    assert latest_complete(tmp_path) == done
    assert latest_complete(tmp_path / "missing") is None
