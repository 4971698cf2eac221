"""GET /health throughput of the real API (`embedtune api`, one process, fresh PostgreSQL
database, Redis broker) under wrk on loopback, against the same server's throughput on a page
that touches neither the database nor the broker (GET /docs), measured in the same run.

For each of --rounds: wrk on /docs, then on /health (--connections, --duration, 2 threads).
Prints requests/s, p50/p99 latency, non-2xx counts, the /health:/docs ratio, and how many
broker connections Redis accepted during the /health runs (INFO stats total_connections_received;
other users of the same Redis add to it). The last commit (`git archive HEAD`, same venv) is
measured first the same way, for the before/after ratio (--no-baseline: only this checkout).

    .venv/bin/python bench/api_health.py --json-out bench/results/2026-12-01-cpu-api-health.json \
        --text-out bench/results/2026-12-01-cpu-api-health.txt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import redis
from api_server import REDIS_URL, REPO_ROOT, export_head, running_api, wait_first_200

GOAL_RPS = 3000.0
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


def wrk(url: str, connections: int, duration_s: int) -> dict[str, Any]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration_s}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.MULTILINE))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p50_ms": _ms(latency["50"]),
        "p99_ms": _ms(latency["99"]),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(1) if errors else "",
    }


def measure(tree: Path, args: argparse.Namespace, broker: redis.Redis) -> dict[str, Any]:
    rounds = []
    with running_api(tree) as api:
        wait_first_200(api.url, api.proc)
        for _ in range(args.rounds):
            docs = wrk(f"{api.url}/docs", args.connections, args.duration_s)
            before = int(broker.info("stats")["total_connections_received"])
            health = wrk(f"{api.url}/health", args.connections, args.duration_s)
            after = int(broker.info("stats")["total_connections_received"])
            health["broker_connections"] = after - before
            rounds.append({"docs": docs, "health": health})
    health_rps = statistics.median(r["health"]["rps"] for r in rounds)
    docs_rps = statistics.median(r["docs"]["rps"] for r in rounds)
    return {
        "rounds": rounds,
        "median_rps": {"health": health_rps, "docs": docs_rps},
        "health_to_docs": health_rps / docs_rps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration-s", type=int, default=10)
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="Measure this checkout only (default: the last commit first, then this one).",
    )
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--text-out", type=Path)
    args = parser.parse_args()

    broker = redis.Redis.from_url(REDIS_URL)
    trees = {"this checkout": REPO_ROOT}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_baseline:
            trees = {"HEAD": export_head(Path(tmp) / "head"), **trees}
        results = {name: measure(tree, args, broker) for name, tree in trees.items()}

    lines = [
        "GET /health under wrk",
        f"host: {platform.node()} {os.cpu_count()} CPUs; one `embedtune api` process on "
        f"PostgreSQL + Redis; wrk -t2 -c{args.connections} -d{args.duration_s}s on loopback; "
        "broker conns: connections Redis accepted during the /health run (anyone's)",
    ]
    for name, r in results.items():
        header = "round  route    req/s   p50 ms   p99 ms  non-2xx  broker conns"
        lines += ["", f"== {name}", header]
        for i, rnd in enumerate(r["rounds"]):
            for route in ("docs", "health"):
                m = rnd[route]
                lines.append(
                    f"{i:>5}  {route:<7} {m['rps']:>6.0f} {m['p50_ms']:>8.2f} "
                    f"{m['p99_ms']:>8.2f} {m['non_2xx']:>8}  {m.get('broker_connections', '')}"
                )
        lines.append(
            f"median /health {r['median_rps']['health']:.0f} req/s, /docs "
            f"{r['median_rps']['docs']:.0f} req/s, ratio {r['health_to_docs']:.2f}; goal "
            f"{GOAL_RPS:g} req/s (ratio to goal {r['median_rps']['health'] / GOAL_RPS:.2f})"
        )
    if "HEAD" in results:
        before, after = results["HEAD"], results["this checkout"]
        lines += [
            "",
            "this checkout / HEAD, /health req/s (medians): "
            f"{after['median_rps']['health'] / before['median_rps']['health']:.1f}x",
        ]
    text = "\n".join(lines)
    print(text)
    result = {
        "connections": args.connections,
        "duration_s": args.duration_s,
        "goal_rps": GOAL_RPS,
        "trees": results,
    }
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    if args.text_out:
        args.text_out.write_text(text + "\n")


if __name__ == "__main__":
    main()
