"""One run on two devices: two CPU processes with gloo (worker.launch), on the tiny model and real
SNLI rows, against the same run in one process.

The model here has no dropout: dropout draws differ from process to process, and without them a
two-process run is the very computation of the one-process run (the same global batches, the
same in-batch negatives), so its losses, weights and accuracy can be compared with it closely.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from sentence_transformers import SentenceTransformer

from rules.devices import BatchSizeNotDivisible, per_device_batch_size
from tests.accuracy import cosine_triplet_accuracy
from tests.support.tiny_model import read_jsonl, write_jsonl
from tests.training.conftest import local
from worker.launch import RUN_FOLDER, run_training
from worker.run_folder import RunFolder
from worker.training.checkpoints import COMPLETE_MARKER, latest_complete
from worker.training.distributed import GlobalBatches
from worker.training.errors import DatasetInvalid, TrainingStopped
from worker.training.pipeline import run
from worker.training.spec import (
    CheckpointPolicy,
    Hyperparameters,
    MetricPoint,
    Progress,
    StopReason,
    TrainingResult,
    TrainingSpec,
)

# 96 training rows in global batches of 8: 12 steps an epoch, 2 epochs. (Far past that, with the
# training loss near 0, Adam turns float rounding into visible drift between any two runs.)
STEPS = 24
# eval_steps given (the default's ceil(24 / 10)): without it, each run evaluates what fits in
# a tenth of its own training time, and the two runs' series could differ by timing.
HYPERPARAMETERS = Hyperparameters(
    batch_size=8, learning_rate=1e-3, max_steps=STEPS, seed=7, eval_steps=3
)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path) -> Path:
    """The tiny model, without dropout."""
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(tiny_models / "tiny", root / "tiny")
    config_path = root / "tiny" / "config.json"
    config = json.loads(config_path.read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    config_path.write_text(json.dumps(config))
    return root


def _spec(tmp: Path, models: Path, data_files: dict[str, Path], **overrides: Any) -> TrainingSpec:
    values: dict[str, Any] = {
        "base_model": "tiny",
        "train": local(data_files["train_triplets"]),
        "eval": local(data_files["eval"]),
        "test": local(data_files["test"]),
        "output_dir": tmp / "out",
        "work_dir": tmp / "work",
        "model_dirs": (models,),
        "hyperparameters": HYPERPARAMETERS,
    }
    values.update(overrides)
    return TrainingSpec(**values)


class Recorder:
    """Progress, metric points and a RunControl that asks to stop with `reason` once progress
    reached `after_step`, and checks every checkpoint it is told about."""

    def __init__(self, reason: StopReason | None = None, after_step: int = 0) -> None:
        self.reason = reason
        self.after_step = after_step
        self.progress: list[Progress] = []
        self.points: list[MetricPoint] = []
        self.saved: list[int] = []

    def report(self, progress: Progress) -> None:
        self.progress.append(progress)

    def record(self, point: MetricPoint) -> None:
        self.points.append(point)

    def stop_requested(self) -> StopReason | None:
        if self.reason and self.progress and self.progress[-1].step >= self.after_step:
            return self.reason
        return None

    def checkpoint_saved(self, step: int, path: Path) -> None:
        # Complete, with the RNG state of each of the two ranks, by the time it is recorded.
        assert (path / COMPLETE_MARKER).is_file()
        assert {p.name for p in path.glob("rng_state*.pth")} == {
            "rng_state_0.pth",
            "rng_state_1.pth",
        }
        self.saved.append(step)

    def series(self, kind: str) -> dict[int, dict[str, float | None]]:
        return {p.step: p.values for p in self.points if p.kind == kind}


def _on_two(spec: TrainingSpec, recorder: Recorder) -> TrainingResult:
    return run_training(
        spec,
        recorder.report,
        recorder.record,
        recorder,
        devices=2,
        job_id="job",
        attempt=1,
        work_dir=Path(spec.work_dir),
    )


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    model = SentenceTransformer(str(model_dir), device="cpu")
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_weights(got: Path, expected: Path) -> None:
    mine, theirs = _weights(got), _weights(expected)
    assert mine.keys() == theirs.keys()
    for key in mine:
        torch.testing.assert_close(mine[key], theirs[key], rtol=1e-3, atol=1e-4)


@pytest.fixture(scope="module")
def one_process(
    tmp_path_factory: pytest.TempPathFactory, models: Path, data_files: dict[str, Path]
) -> tuple[TrainingResult, Recorder]:
    """The run in one process, uninterrupted: what the two-process runs must match."""
    recorder = Recorder()
    spec = _spec(tmp_path_factory.mktemp("one-process"), models, data_files)
    result = run(spec, recorder.report, recorder.record)
    return result, recorder


# Without processes -----------------------------------------------------------------------------


def test_batch_size_is_the_global_batch_and_must_split_evenly(tmp_path, models, data_files):
    assert per_device_batch_size(16, 1) == 16
    assert per_device_batch_size(16, 4) == 4
    with pytest.raises(BatchSizeNotDivisible) as raised:
        per_device_batch_size(10, 4)
    assert raised.value.code == "batch_size_not_divisible"
    assert "multiple of 4" in raised.value.message

    # Refused before any process starts.
    spec = _spec(
        tmp_path, models, data_files, hyperparameters=replace(HYPERPARAMETERS, batch_size=9)
    )
    recorder = Recorder()
    with pytest.raises(BatchSizeNotDivisible):
        _on_two(spec, recorder)
    assert not (tmp_path / "work" / RUN_FOLDER).exists()


def test_global_batches_are_the_one_process_batches_cut_in_equal_pieces(data_files):
    from datasets import Dataset
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

    # 45 rows with repeated anchors (SNLI premises come with several hypotheses): the last
    # global batch is short and odd.
    data = Dataset.from_list(read_jsonl(data_files["train_triplets"], limit=45))
    one = NoDuplicatesBatchSampler(data, batch_size=8, drop_last=False, seed=3)
    one.generator = torch.Generator().manual_seed(3)
    expected = [list(b) for b in one]
    assert len(expected[-1]) % 2 == 1

    # The trainer asks for per-device batches of 4, and on two devices forces drop_last.
    pieces = GlobalBatches(2)(
        data, batch_size=4, drop_last=True, generator=torch.Generator().manual_seed(3), seed=3
    )
    assert len(pieces) == 2 * len(one)
    got = list(pieces)
    assert len(got) == 2 * len(expected)
    for batch, (first, second) in zip(expected, zip(got[::2], got[1::2], strict=True), strict=True):
        assert len(first) == len(second)
        assert (first + second)[: len(batch)] == batch
    # The short batch got one more row, whose texts no row of that batch has.
    last = got[-2] + got[-1]
    added = last[len(expected[-1]) :]
    assert len(added) == 1
    texts = {str(v) for i in expected[-1] for v in data[i].values()}
    assert texts.isdisjoint(str(v) for v in data[added[0]].values())

    # The epoch reaches the sampler: another epoch, another order.
    pieces.set_epoch(1)
    assert list(pieces) != got


_AGREE = """
import json, sys
import torch.distributed as dist
from worker.training.distributed import agree, agree_on_stop

rank, port, inputs = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
reasons, flags = inputs[rank]
print(json.dumps({"stop": [agree_on_stop(r) for r in reasons], "save": [agree(f) for f in flags]}))
dist.destroy_process_group()
"""


def test_ranks_agree_on_stopping_and_saving():
    from tests.support.services import free_port

    inputs = [
        ([None, "handed_back", None, "lease_lost"], [False, True, False]),
        ([None, "cancelled", "timeout", None], [False, False, True]),
    ]
    port = str(free_port())
    ranks = [
        subprocess.Popen(
            [sys.executable, "-c", _AGREE, str(rank), port, json.dumps(inputs)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    agreed = [json.loads(rank.communicate(timeout=120)[0]) for rank in ranks]
    assert agreed[0] == agreed[1]
    # The highest-ranked reason wins, as worker.attempt ranks them.
    assert agreed[0]["stop"] == [None, "cancelled", "timeout", "lease_lost"]
    assert agreed[0]["save"] == [False, True, True]


# Two processes ---------------------------------------------------------------------------------


def test_two_processes_train_as_one(tmp_path, models, data_files, one_process):
    expected, alone = one_process
    recorder = Recorder()
    result = _on_two(_spec(tmp_path, models, data_files), recorder)

    assert result.total_steps == expected.total_steps == STEPS
    assert result.device == "cpu" and result.train_rows == expected.train_rows == 96
    assert result.eval_steps == expected.eval_steps
    # Progress from the main rank, to the last step.
    steps = [p.step for p in recorder.progress]
    assert steps == sorted(steps) and steps[-1] == STEPS
    assert {p.total_steps for p in recorder.progress} == {STEPS}
    # The same steps: each global batch, its losses and evaluations are the one-process run's.
    train, train_alone = recorder.series("train"), alone.series("train")
    assert train.keys() == train_alone.keys() and max(train) == STEPS
    for step, values in train.items():
        assert values["loss"] == pytest.approx(train_alone[step]["loss"], rel=1e-3), step
    evals, evals_alone = recorder.series("eval"), alone.series("eval")
    assert evals.keys() == evals_alone.keys() and {0, STEPS} <= evals.keys()
    for step, values in evals.items():
        assert values.keys() == evals_alone[step].keys()
        assert values["loss"] == pytest.approx(evals_alone[step]["loss"], rel=1e-3), step

    # The saved model loads, is the one-process model, and scores as the run reported.
    _assert_same_weights(result.model_dir, expected.model_dir)
    assert result.metrics is not None and expected.metrics is not None
    accuracy = cosine_triplet_accuracy(result.model_dir, data_files["test"])
    assert accuracy == pytest.approx(result.metrics["fine_tuned"]["cosine_accuracy"], abs=1e-6)
    assert result.metrics["base"] == pytest.approx(expected.metrics["base"], abs=1e-6)
    test_rows = len(read_jsonl(data_files["test"]))
    for key, value in result.metrics["fine_tuned"].items():
        # Within one triplet of the one-process run: float sums in another order, no more.
        assert abs(value - expected.metrics["fine_tuned"][key]) <= 1 / test_rows + 1e-6, key
    assert (
        result.metrics["fine_tuned"]["cosine_accuracy"] > result.metrics["base"]["cosine_accuracy"]
    )
    assert json.loads((result.model_dir / "metrics.json").read_text())["total_steps"] == STEPS


def _stopped_ranks(spec: TrainingSpec) -> dict[int, tuple[str, int, str | None] | None]:
    outcomes = RunFolder(Path(spec.work_dir) / RUN_FOLDER).outcomes()
    return {rank: outcome.stopped for rank, outcome in outcomes.items()}


def test_a_cancel_stops_both_ranks_at_the_same_step(tmp_path, models, data_files):
    spec = _spec(
        tmp_path,
        models,
        data_files,
        # Far more steps than it will take: the cancel comes mid-run.
        hyperparameters=replace(HYPERPARAMETERS, max_steps=10_000),
        checkpoints=CheckpointPolicy(dir=tmp_path / "checkpoints", every_s=3600),
    )
    recorder = Recorder("cancelled", after_step=2)
    with pytest.raises(TrainingStopped) as stopped:
        _on_two(spec, recorder)

    step = stopped.value.step
    assert stopped.value.reason == "cancelled" and 2 <= step < 10_000
    assert stopped.value.checkpoint is None and recorder.saved == []
    assert _stopped_ranks(spec) == {0: ("cancelled", step, None), 1: ("cancelled", step, None)}
    assert not (tmp_path / "out").exists()  # no model for a stopped run
    assert max(p.step for p in recorder.progress) == step


def test_a_hand_back_checkpoints_and_one_or_two_processes_resume_it(
    tmp_path, models, data_files, one_process
):
    expected, _ = one_process
    root = tmp_path / "checkpoints"
    # As soon as training reports progress: well before its last step.
    first = Recorder("handed_back", after_step=1)
    spec = _spec(
        tmp_path / "a1",
        models,
        data_files,
        checkpoints=CheckpointPolicy(dir=root / "attempt-1", every_s=3600, every_steps=2),
    )
    with pytest.raises(TrainingStopped) as stopped:
        _on_two(spec, first)

    step = stopped.value.step
    assert stopped.value.reason == "handed_back" and 1 <= step < STEPS
    saved = root / "attempt-1" / f"checkpoint-{step}"
    assert stopped.value.checkpoint == str(saved)
    assert _stopped_ranks(spec) == {r: ("handed_back", step, str(saved)) for r in (0, 1)}
    # Every 2 steps, and at the hand-back (each recorded once complete, by Recorder).
    assert first.saved == sorted({*range(2, step + 1, 2), step})
    assert latest_complete(root) == saved

    for devices in (1, 2):
        recorder = Recorder()
        resumed_spec = _spec(
            tmp_path / f"resume-{devices}",
            models,
            data_files,
            checkpoints=CheckpointPolicy(
                dir=root / f"attempt-{devices + 1}", every_s=3600, resume_from=saved
            ),
        )
        resumed = run_training(
            resumed_spec,
            recorder.report,
            recorder.record,
            recorder,
            devices=devices,
            job_id="job",
            attempt=devices + 1,
            work_dir=tmp_path / f"resume-{devices}" / "work",
        )
        # Only the remaining steps, to the same total and the same model.
        assert resumed.total_steps == STEPS, devices
        # The checkpoint's step when training begins again, then only steps after it (the
        # ranks' progress reaches the parent sampled, not every step).
        steps = [p.step for p in recorder.progress]
        assert steps[0] == step and min(steps[1:]) > step and steps[-1] == STEPS
        _assert_same_weights(resumed.model_dir, expected.model_dir)


def test_a_training_error_comes_back_typed(tmp_path, models, data_files):
    empty = write_jsonl(tmp_path / "empty.jsonl", [])
    spec = _spec(tmp_path / "two", models, data_files, train=local(empty))
    with pytest.raises(DatasetInvalid) as on_two:
        _on_two(spec, Recorder())
    with pytest.raises(DatasetInvalid) as alone:
        run(_spec(tmp_path / "one", models, data_files, train=local(empty)), lambda p: None)
    assert on_two.value.code == alone.value.code == "dataset_invalid"
    assert on_two.value.message == alone.value.message


def test_a_failure_of_the_other_rank_ends_the_run(tmp_path, models, data_files):
    spec = _spec(tmp_path, models, data_files)
    # Rank 1 cannot make its scratch folder; rank 0 would wait for it forever.
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "rank-1").write_text("not a folder")
    started = time.monotonic()
    with pytest.raises(FileExistsError):
        _on_two(spec, Recorder())
    assert time.monotonic() - started < 120
    outcomes = RunFolder(tmp_path / "work" / RUN_FOLDER).outcomes()
    assert isinstance(outcomes[1].error, FileExistsError)


_DRIVER = """
import pickle, sys
from pathlib import Path
from worker.launch import run_training
spec = pickle.loads(Path(sys.argv[1]).read_bytes())
run_training(spec, lambda p: None, None, None, devices=2, job_id="job", attempt=1,
             work_dir=spec.work_dir)
"""


def _processes_naming(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_the_ranks_end_when_the_worker_is_killed(tmp_path, models, data_files):
    import pickle

    spec = _spec(
        tmp_path, models, data_files, hyperparameters=replace(HYPERPARAMETERS, max_steps=10**6)
    )
    spec_path = tmp_path / "spec.pkl"
    spec_path.write_bytes(pickle.dumps(spec))
    driver = subprocess.Popen([sys.executable, "-c", _DRIVER, str(spec_path)], cwd=Path.cwd())
    folder = RunFolder(tmp_path / "work" / RUN_FOLDER)
    try:
        deadline = time.monotonic() + 180
        while not folder.read_events(0)[0]:  # training has begun
            assert driver.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        assert len(_processes_naming(str(folder.root))) == 3  # the launcher and two ranks
    finally:
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    deadline = time.monotonic() + 30
    while _processes_naming(str(folder.root)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_naming(str(folder.root)) == []
