"""Fixtures for the training pipeline tests: a tiny model, small real data files, one shared run.

Everything here is package-scoped so that the Hugging Face offline switch below is in force before
any fixture that touches a Hugging Face library runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.tiny_model import (
    SHARED_DATA,
    as_pairs,
    build_tiny_model,
    read_jsonl,
    write_jsonl,
)
from worker.training.spec import (
    DataSource,
    Hyperparameters,
    LocalData,
    MetricPoint,
    Progress,
    TrainingResult,
    TrainingSpec,
)

SNLI_TRIPLETS = SHARED_DATA / "snli_dev_triplets.jsonl"
TRIPLET_COLUMNS = ("anchor", "positive", "negative")
PAIR_COLUMNS = ("anchor", "positive")
TINY_RUN_STEPS = 6


def local(path: Path, columns: tuple[str, ...] = TRIPLET_COLUMNS) -> LocalData:
    return LocalData(path=path, format="jsonl", columns=columns)


@pytest.fixture(scope="package", autouse=True)
def hf_offline() -> Iterator[None]:
    """The Hub is unreachable from tests: make every Hugging Face library fail fast instead of
    retrying for a minute. The libraries copy these variables at import time (which happened during
    collection), so their module-level copies are patched too."""
    import datasets.config
    import huggingface_hub.constants

    with pytest.MonkeyPatch.context() as mp:
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            mp.setenv(var, "1")
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        mp.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        mp.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
        yield


@pytest.fixture(scope="package")
def snli_rows() -> list[dict[str, Any]]:
    """The first 400 real SNLI dev triplets."""
    return read_jsonl(SNLI_TRIPLETS, limit=400)


@pytest.fixture(scope="package")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory holding the tiny model as `tiny`. Shared: do not modify."""
    root = tmp_path_factory.mktemp("models")
    build_tiny_model(root / "tiny")
    return root


@pytest.fixture(scope="package")
def data_files(
    tmp_path_factory: pytest.TempPathFactory, snli_rows: list[dict[str, Any]]
) -> dict[str, Path]:
    """Small local JSONL files of real rows: train pairs/triplets, eval and test triplets."""
    root = tmp_path_factory.mktemp("data")
    return {
        "train_pairs": write_jsonl(root / "train_pairs.jsonl", as_pairs(snli_rows[:96])),
        "train_triplets": write_jsonl(root / "train_triplets.jsonl", snli_rows[:96]),
        "eval": write_jsonl(root / "eval.jsonl", snli_rows[200:260]),
        "test": write_jsonl(root / "test.jsonl", snli_rows[300:380]),
        "test_pairs": write_jsonl(root / "test_pairs.jsonl", as_pairs(snli_rows[300:380])),
    }


SpecFactory = Callable[..., TrainingSpec]


@pytest.fixture(scope="package")
def make_spec(tiny_models: Path) -> SpecFactory:
    """make_spec(tmp, train, **TrainingSpec overrides): a small run of the tiny model."""

    def factory(tmp: Path, train: DataSource, **overrides: Any) -> TrainingSpec:
        values: dict[str, Any] = {
            "base_model": "tiny",
            "output_dir": tmp / "out",
            "work_dir": tmp / "work",
            "model_dirs": (tiny_models,),
            "hyperparameters": Hyperparameters(batch_size=8, learning_rate=1e-3, max_steps=3),
        }
        values.update(overrides)
        return TrainingSpec(train=train, **values)

    return factory


@dataclass
class Run:
    spec: TrainingSpec
    result: TrainingResult
    events: list[Progress]
    points: list[MetricPoint]

    def series(self, kind: str) -> list[MetricPoint]:
        return [p for p in self.points if p.kind == kind]


@pytest.fixture(scope="package")
def tiny_run(
    tmp_path_factory: pytest.TempPathFactory, make_spec: SpecFactory, data_files: dict[str, Path]
) -> Run:
    """One real pipeline run of the tiny model: train pairs, eval and test triplets, with every
    MetricPoint recorded."""
    from worker.training.pipeline import run

    spec = make_spec(
        tmp_path_factory.mktemp("tiny-run"),
        local(data_files["train_pairs"], PAIR_COLUMNS),
        eval=local(data_files["eval"]),
        test=local(data_files["test"]),
        # Every step, as given: the default cadence skips what does not fit in a tenth of the
        # training time (tests/training/test_eval_cost.py), and these tests check the series.
        hyperparameters=Hyperparameters(
            batch_size=8, learning_rate=1e-3, max_steps=TINY_RUN_STEPS, eval_steps=1
        ),
    )
    events: list[Progress] = []
    points: list[MetricPoint] = []
    result = run(spec, events.append, points.append)
    return Run(spec, result, events, points)
