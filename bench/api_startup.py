"""Cold start and idle memory of the real API: `embedtune api` (the console script), one
process, on a fresh PostgreSQL database (migrated beforehand, not timed) with Redis as broker.

For each of --runs starts: seconds from the exec to the first 200 from /health (polled every
10 ms), the CPU seconds the process used until then (robust to a busy machine), and VmRSS of
the serving process after --idle-s seconds idle. Then the import profile of what the serving
process imports (`python -X importtime`): the top packages by their own import time, the top
modules by cumulative time, and whether torch, sentence_transformers, pandas, pyarrow, boto3,
jinja2 are loaded at all. Prints medians and min/max against the issue's goals (1.5 s, 120 MB).

Also runs the last commit (`git archive HEAD`, on the same venv) alternately with this checkout,
so that the before/after ratio is measured under the same load (--no-baseline: only this one).
Both are byte-compiled first (`compileall app rules`), as the API image is.

    .venv/bin/python bench/api_startup.py --runs 5 \
        --json-out bench/results/2026-12-01-cpu-api-startup.json \
        --text-out bench/results/2026-12-01-cpu-api-startup.txt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from api_server import REPO_ROOT, export_head, running_api, wait_first_200

GOAL_READY_S = 1.5
GOAL_RSS_MB = 120.0
WATCHED = ("torch", "sentence_transformers", "pandas", "pyarrow", "boto3", "botocore", "jinja2")
# What `embedtune api` imports before it serves: the CLI, uvicorn, the app and its factory.
SERVING_IMPORTS = (
    "import app.cli, uvicorn, uvicorn.main, app.main, sys; app.main.create_app(); "
    "print(' '.join(sorted(sys.modules)))"
)


def start_once(tree: Path, idle_s: float) -> dict[str, float]:
    with running_api(tree) as api:
        ready = wait_first_200(api.url, api.proc)
        cpu_s = api.cpu_s()
        time.sleep(idle_s)
        return {
            "ready_s": round(ready - api.started, 3),
            "cpu_s": round(cpu_s, 2),
            "rss_mb": round(api.vm_rss_mb(), 1),
        }


def import_profile(tree: Path, top: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data_dir:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDTUNE_")}
        env["EMBEDTUNE_DATA_DIR"] = data_dir
        env["PYTHONPATH"] = str(tree)
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", SERVING_IMPORTS],
            env=env,
            cwd=tree,
            capture_output=True,
            text=True,
            check=True,
        )
    modules = set(result.stdout.split())
    rows = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line.split(":", 1)[1].split("|")
        rows.append((name.strip(), int(self_us), int(cumulative_us)))
    by_package: dict[str, int] = {}
    for name, self_us, _ in rows:
        by_package[name.split(".")[0]] = by_package.get(name.split(".")[0], 0) + self_us
    total_us = sum(self_us for _, self_us, _ in rows)
    return {
        "total_ms": round(total_us / 1000, 1),
        "modules": len(modules),
        "top_packages_self_ms": [
            (name, round(us / 1000, 1))
            for name, us in sorted(by_package.items(), key=lambda kv: -kv[1])[:top]
        ],
        "top_modules_cumulative_ms": [
            (name, round(cum / 1000, 1))
            for name, _, cum in sorted(rows, key=lambda r: -r[2])
            if "." not in name
        ][:top],
        "loaded": {name: name in modules for name in WATCHED},
    }


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle-s", type=float, default=3.0)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="Measure this checkout only (default: also the last commit, alternating).",
    )
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--text-out", type=Path)
    args = parser.parse_args()

    trees = {"this checkout": REPO_ROOT}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_baseline:
            trees = {"HEAD": export_head(Path(tmp) / "head"), **trees}
        for tree in trees.values():
            # As the API image does (Dockerfile): a start then reads bytecode rather than
            # compiling app/ (PYTHONDONTWRITEBYTECODE=1 would otherwise compile it every time).
            subprocess.run(
                [sys.executable, "-m", "compileall", "-q", "app", "rules"], cwd=tree, check=True
            )
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for _ in range(args.runs):  # alternating: both see the same load on a shared machine
            for name, tree in trees.items():
                runs[name].append(start_once(tree, args.idle_s))
        profiles = {name: import_profile(tree, args.top) for name, tree in trees.items()}
    results = {
        name: {
            "runs": runs[name],
            "ready_s": summary([r["ready_s"] for r in runs[name]]),
            "cpu_s": summary([r["cpu_s"] for r in runs[name]]),
            "rss_mb": summary([r["rss_mb"] for r in runs[name]]),
            "imports": profiles[name],
        }
        for name in trees
    }
    lines = [
        "embedtune api cold start",
        f"host: {platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"{args.runs} starts of each tree, alternating, a fresh PostgreSQL database each; "
        f"RSS after {args.idle_s:g} s idle",
    ]
    for name, r in results.items():
        ready, rss, profile = r["ready_s"], r["rss_mb"], r["imports"]
        lines += [
            "",
            f"== {name}",
            "ready_s: " + " ".join(f"{x['ready_s']:.3f}" for x in r["runs"]),
            "cpu_s:   " + " ".join(f"{x['cpu_s']:.2f}" for x in r["runs"]),
            "rss_mb:  " + " ".join(f"{x['rss_mb']:.1f}" for x in r["runs"]),
            f"exec -> first 200 /health: median {ready['median']:.3f} s "
            f"(min {ready['min']:.3f}, max {ready['max']:.3f}); goal {GOAL_READY_S} s",
            f"CPU time of the process until then: median {r['cpu_s']['median']:.2f} s "
            "(what the start costs without waiting for a CPU)",
            f"idle VmRSS: median {rss['median']:.1f} MB (min {rss['min']:.1f}, "
            f"max {rss['max']:.1f}); goal {GOAL_RSS_MB:g} MB",
            f"imports: {profile['modules']} modules, {profile['total_ms']} ms "
            "(-X importtime, sum of self times)",
            "loaded: "
            + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in profile["loaded"].items()),
            "top packages by own import time (ms):",
            *(f"  {n:<28} {ms:>7.1f}" for n, ms in profile["top_packages_self_ms"]),
            "top top-level imports by cumulative time (ms):",
            *(f"  {n:<28} {ms:>7.1f}" for n, ms in profile["top_modules_cumulative_ms"]),
        ]
    if "HEAD" in results:
        before, after = results["HEAD"], results["this checkout"]
        lines += [
            "",
            "this checkout / HEAD (medians, same run): ready "
            f"{after['ready_s']['median'] / before['ready_s']['median']:.2f}, CPU to ready "
            f"{after['cpu_s']['median'] / before['cpu_s']['median']:.2f}, RSS "
            f"{after['rss_mb']['median'] / before['rss_mb']['median']:.2f}",
        ]
    text = "\n".join(lines)
    print(text)
    result = {
        "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "goals": {"ready_s": GOAL_READY_S, "rss_mb": GOAL_RSS_MB},
        "trees": results,
    }
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    if args.text_out:
        args.text_out.write_text(text + "\n")


if __name__ == "__main__":
    main()
