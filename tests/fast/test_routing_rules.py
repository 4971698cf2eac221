"""app.routing: the queue a job waits in, the queues a worker takes, and the GPU type names;
and the routing settings read from the environment."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.routing import Resources, check_gpu_type, queue_for, queues_for_worker
from app.settings import Settings

BASE = "embedtune"


@pytest.mark.parametrize(
    ("resources", "queue"),
    [
        (Resources(), "embedtune"),
        (Resources(gpu_type="h100"), "embedtune.h100"),
        (Resources(gpus=4), "embedtune.any.x4"),
        (Resources(gpu_type="h100", gpus=2), "embedtune.h100.x2"),
    ],
)
def test_a_job_waits_in_the_queue_of_its_type_and_device_count(
    resources: Resources, queue: str
) -> None:
    assert queue_for(resources, BASE) == queue


def test_jobs_from_before_routing_keep_the_default_queue() -> None:
    assert Resources.of(None) == Resources(gpu_type=None, gpus=1)
    assert queue_for(Resources.of(None), BASE) == BASE
    assert Resources.of({"gpu_type": "a100", "gpus": 3}) == Resources("a100", 3)


def test_a_typed_worker_takes_its_type_and_any_type_up_to_its_device_count() -> None:
    assert queues_for_worker("h100", 2, BASE) == [
        "embedtune",
        "embedtune.any.x2",
        "embedtune.h100",
        "embedtune.h100.x2",
    ]


def test_an_untyped_worker_takes_only_any_type_queues() -> None:
    assert queues_for_worker(None, 1, BASE) == ["embedtune"]
    assert queues_for_worker(None, 3, BASE) == ["embedtune", "embedtune.any.x2", "embedtune.any.x3"]


def test_every_job_reaches_exactly_the_workers_that_can_run_it() -> None:
    workers = {
        (gpu_type, gpus): set(queues_for_worker(gpu_type, gpus, BASE))
        for gpu_type in (None, "a100", "h100")
        for gpus in (1, 2, 4)
    }
    for job_type in (None, "a100", "h100"):
        for job_gpus in (1, 2, 3, 4, 5):
            queue = queue_for(Resources(job_type, job_gpus), BASE)
            takers = {w for w, queues in workers.items() if queue in queues}
            can_run = {
                (gpu_type, gpus)
                for gpu_type, gpus in workers
                if gpus >= job_gpus and (job_type is None or gpu_type == job_type)
            }
            assert takers == can_run, (job_type, job_gpus)


@pytest.mark.parametrize("name", ["h100", "a100-80gb", "rtx_4090", "l4", "9"])
def test_gpu_type_names_that_are_accepted(name: str) -> None:
    assert check_gpu_type(name) == name


@pytest.mark.parametrize(
    "name", ["H100", "h100.x2", "", "-h100", "_x", "h 100", "h100\n", "a" * 65, "any", "../x"]
)
def test_gpu_type_names_that_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        check_gpu_type(name)


def test_a_worker_has_at_least_one_device() -> None:
    with pytest.raises(ValueError):
        queues_for_worker(None, 0, BASE)


def test_describe_reads_as_a_sentence_part() -> None:
    assert Resources("h100", 2).describe() == "gpu_type 'h100' with 2 GPUs"
    assert Resources().describe() == "any gpu_type with 1 GPU"


def test_routing_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDTUNE_GPU_TYPES", " a100, h100 ,,a100")
    monkeypatch.setenv("EMBEDTUNE_MAX_GPUS_PER_JOB", "4")
    monkeypatch.setenv("EMBEDTUNE_WORKER_GPU_TYPE", "")
    monkeypatch.setenv("EMBEDTUNE_WORKER_GPUS", "")
    settings = Settings()
    assert settings.gpu_types == ["a100", "h100"]
    assert settings.max_gpus_per_job == 4
    assert settings.worker_gpu_type is None and settings.worker_gpus is None


@pytest.mark.parametrize(
    ("name", "value"),
    [("GPU_TYPES", "a100,H100"), ("GPU_TYPES", "any"), ("MAX_GPUS_PER_JOB", "0")],
)
def test_bad_routing_settings_are_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"EMBEDTUNE_{name}", value)
    with pytest.raises(ValidationError):
        Settings()
