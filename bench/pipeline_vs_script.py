"""Embedtune's training pipeline against a plain sentence-transformers script, in one process.

Both start from the same freshly initialised MiniLM-L6-shaped model (a BERT of 6 layers, hidden
384, the all-MiniLM-L6-v2 tokenizer), train with MNR loss on the same SNLI triplets with the same
hyperparameters, score base and fine-tuned model with the same TripletEvaluator on held-out
triplets (different premises), and save the model. Runs alternate (script, pipeline, script,
pipeline, ...); the first round is a warm-up and the medians are over the rest.

The script side is the sentence-transformers tutorial recipe, written as a user would. The
pipeline side is `worker.training.pipeline.run`, exactly what a worker runs for a job (the HTTP,
database and Celery layers around it add a fixed few seconds per job that are not measured here).

    python bench/pipeline_vs_script.py --tokenizer DIR --data snli_dev_triplets.jsonl
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIMILARITIES = ["cosine", "dot", "euclidean", "manhattan"]


def build_fresh_model(tokenizer_dir: Path, dest: Path, layers: int, seed: int) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(seed)
    tokenizer = BertTokenizerFast.from_pretrained(str(tokenizer_dir))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=384,
        num_hidden_layers=layers,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
    )
    raw = dest.parent / "raw-bert"
    BertModel(config).save_pretrained(str(raw))
    tokenizer.save_pretrained(str(raw))
    transformer = Transformer(str(raw), max_seq_length=128)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    SentenceTransformer(modules=[transformer, pooling]).save(str(dest))
    return dest


def split_by_premise(rows: list[dict], test_share: float) -> tuple[list[dict], list[dict]]:
    premises = list(dict.fromkeys(r["anchor"] for r in rows))
    test_premises = set(premises[int(len(premises) * (1 - test_share)) :])
    return (
        [r for r in rows if r["anchor"] not in test_premises],
        [r for r in rows if r["anchor"] in test_premises],
    )


def run_script(model_dir: Path, train: Path, test: Path, out: Path, hp: dict) -> dict:
    """The tutorial recipe: model, data, loss, evaluator, args, trainer, evaluate, save."""
    import torch
    from datasets import load_dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.evaluation import TripletEvaluator
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )

    cuda = torch.cuda.is_available()
    model = SentenceTransformer(str(model_dir))
    train_dataset = load_dataset("json", data_files=str(train), split="train")
    test_dataset = load_dataset("json", data_files=str(test), split="train")
    loss = MultipleNegativesRankingLoss(model)
    evaluator = TripletEvaluator(
        anchors=test_dataset["anchor"],
        positives=test_dataset["positive"],
        negatives=test_dataset["negative"],
        name="test",
        similarity_fn_names=SIMILARITIES,
    )
    base = evaluator(model)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "trainer"),
        num_train_epochs=hp["epochs"],
        per_device_train_batch_size=hp["batch_size"],
        learning_rate=hp["learning_rate"],
        warmup_steps=hp["warmup_ratio"],
        seed=hp["seed"],
        max_steps=hp.get("max_steps") or -1,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        fp16=cuda and not torch.cuda.is_bf16_supported(),
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="no",
        logging_steps=100,
        report_to="none",
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=train_dataset, loss=loss, evaluator=evaluator
    )
    trainer.train()
    tuned = evaluator(model)
    model.save(str(out / "model"))
    return {
        "base": base["test_cosine_accuracy"],
        "fine_tuned": tuned["test_cosine_accuracy"],
        "steps": trainer.state.max_steps,
    }


def run_pipeline(model_dir: Path, train: Path, test: Path, out: Path, hp: dict) -> dict:
    from worker.training.pipeline import run
    from worker.training.spec import Hyperparameters, LocalData, TrainingSpec

    columns = ("anchor", "positive", "negative")
    spec = TrainingSpec(
        base_model=model_dir.name,
        model_dirs=(model_dir.parent,),
        train=LocalData(train, "jsonl", columns),
        # The held-out triplets as the eval set too: the pipeline then trains on exactly the
        # script's rows (no hold-out) and pays for evaluating during training, as jobs do.
        eval=LocalData(test, "jsonl", columns),
        test=LocalData(test, "jsonl", columns),
        output_dir=out / "model",
        work_dir=out / "work",
        hyperparameters=Hyperparameters(**hp),
    )
    result = run(spec, lambda progress: None)
    assert result.metrics is not None
    return {
        "base": result.metrics["base"]["cosine_accuracy"],
        "fine_tuned": result.metrics["fine_tuned"]["cosine_accuracy"],
        "steps": result.total_steps,
        "precision": result.precision,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", type=Path, required=True, help="all-MiniLM-L6-v2 tokenizer")
    parser.add_argument("--data", type=Path, required=True, help="snli_dev_triplets.jsonl")
    parser.add_argument("--rounds", type=int, default=3, help="the first is a warm-up")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--max-rows", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument(
        "--max-steps", type=int, default=None, help="stop both runs after this many steps (CPU)"
    )
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()

    import torch

    # Imported before any timing, so that neither side pays the other's imports.
    importlib.import_module("sentence_transformers")
    importlib.import_module("worker.training.pipeline")

    work = Path(tempfile.mkdtemp(prefix="embedtune-bench-"))
    rows = [json.loads(line) for line in args.data.open()][: args.max_rows]
    train_rows, test_rows = split_by_premise(rows, test_share=0.2)
    train, test = work / "train.jsonl", work / "test.jsonl"
    for path, subset in ((train, train_rows), (test, test_rows)):
        path.write_text("".join(json.dumps(r) + "\n" for r in subset))
    model_dir = build_fresh_model(args.tokenizer, work / "models" / "minilm-fresh", args.layers, 0)
    hp = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "warmup_ratio": 0.1,
        "seed": 42,
    }
    if args.max_steps is not None:
        hp["max_steps"] = args.max_steps
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"device: {device}; train {len(train_rows)} / test {len(test_rows)} triplets; {hp}")

    runs: dict[str, list[dict]] = {"script": [], "pipeline": []}
    for round_ in range(args.rounds):
        for name, fn in (("script", run_script), ("pipeline", run_pipeline)):
            out = work / f"{name}-{round_}"
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            figures = fn(model_dir, train, test, out, hp)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            figures["wall_s"] = time.perf_counter() - start
            runs[name].append(figures)
            print(f"round {round_} {name:8s} {json.dumps(figures)}", flush=True)
            shutil.rmtree(out, ignore_errors=True)

    def median(name: str, key: str) -> float:
        # Round 0 pays the process's CUDA and import warm-up (on the script side, which runs
        # first), so the medians use the warm rounds only when there are any.
        measured = runs[name][1:] if len(runs[name]) > 1 else runs[name]
        return statistics.median(r[key] for r in measured)

    summary = {
        "device": device,
        "train_rows": len(train_rows),
        "test_rows": len(test_rows),
        "hyperparameters": hp,
        "layers": args.layers,
        "runs": runs,
        "median_wall_s": {n: median(n, "wall_s") for n in runs},
        "median_fine_tuned_cosine_accuracy": {n: median(n, "fine_tuned") for n in runs},
    }
    ratio = summary["median_wall_s"]["pipeline"] / summary["median_wall_s"]["script"]
    summary["wall_time_ratio_pipeline_over_script"] = ratio
    print()
    print(f"{'':10s} {'wall s (median, warm)':>22s} {'base acc':>9s} {'tuned acc':>10s}")
    for n in runs:
        print(
            f"{n:10s} {summary['median_wall_s'][n]:22.2f} {runs[n][0]['base']:9.4f} "
            f"{summary['median_fine_tuned_cosine_accuracy'][n]:10.4f}"
        )
    print(f"wall-time ratio pipeline/script: {ratio:.3f}")
    if args.json_out:
        args.json_out.write_text(json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
