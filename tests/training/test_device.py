"""Device and precision resolution, and how a GPU running out of memory is reported."""

from __future__ import annotations

import pytest
import torch

from worker.training.errors import OutOfMemory, PrecisionUnsupported
from worker.training.pipeline import DeviceChoice, resolve_device, run
from worker.training.spec import Hyperparameters, LocalData


@pytest.fixture
def gpu(monkeypatch):
    """Pretend there is a CUDA GPU; `gpu(bf16=...)` says whether it supports bf16."""

    def set_gpu(bf16: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)

    return set_gpu


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_cpu_trains_in_fp32(no_gpu):
    assert resolve_device("auto") == DeviceChoice("cpu", "fp32")
    assert resolve_device("fp32") == DeviceChoice("cpu", "fp32")
    for precision in ("fp16", "bf16"):
        with pytest.raises(PrecisionUnsupported, match=precision):
            resolve_device(precision)


def test_auto_is_bf16_on_gpus_that_support_it(gpu):
    gpu(bf16=True)
    assert resolve_device("auto") == DeviceChoice("cuda", "bf16")
    assert resolve_device("fp16") == DeviceChoice("cuda", "fp16")
    assert resolve_device("fp32") == DeviceChoice("cuda", "fp32")


def test_auto_is_fp16_on_older_gpus_and_bf16_is_refused(gpu):
    gpu(bf16=False)
    assert resolve_device("auto") == DeviceChoice("cuda", "fp16")
    with pytest.raises(PrecisionUnsupported) as info:
        resolve_device("bf16")
    assert info.value.code == "precision_unsupported"


def test_unknown_precision_is_refused():
    with pytest.raises(PrecisionUnsupported):
        resolve_device("fp8")


def test_out_of_memory_during_training_names_the_batch_size(
    tmp_path, make_spec, data_files, monkeypatch
):
    from sentence_transformers import SentenceTransformerTrainer

    def train(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(SentenceTransformerTrainer, "train", train)
    spec = make_spec(
        tmp_path,
        LocalData(data_files["train_pairs"], "jsonl", ("anchor", "positive")),
        hyperparameters=Hyperparameters(batch_size=64, max_seq_length=100, max_steps=2),
    )
    with pytest.raises(OutOfMemory) as info:
        run(spec, lambda p: None)
    assert info.value.code == "out_of_memory"
    assert "batch_size 64" in info.value.message
    assert "max_seq_length 100" in info.value.message
    assert "smaller batch_size" in info.value.message
    assert isinstance(info.value.__cause__, torch.OutOfMemoryError)
    assert not spec.output_dir.exists()


def test_out_of_memory_while_loading_the_model_is_not_model_not_found(
    tmp_path, make_spec, data_files, monkeypatch
):
    import sentence_transformers

    def load(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", load)
    spec = make_spec(
        tmp_path, LocalData(data_files["train_pairs"], "jsonl", ("anchor", "positive"))
    )
    with pytest.raises(OutOfMemory):
        run(spec, lambda p: None)
