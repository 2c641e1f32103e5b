"""`make loadtest`: the release gate. Locust, headless, a fixed profile; fails on a slow p99 or any failure.

    make loadtest                                         # starts the service itself (production settings)
    make loadtest HOST=https://fraud.example.com          # an existing deployment (FRAUD_API_KEY set)
    make loadtest LOADTEST_USERS=40 LOADTEST_SPAWN_RATE=20 LOADTEST_DURATION=60s LOADTEST_P99_MS=200

Without ``--host`` it starts `bentoml serve` with configuration.yaml on a free loopback port with
a fresh key (training a default model first if the store has none). It runs loadtest/locustfile.py
and writes Locust's HTML report and CSV statistics to results/loadtest-<time>/, prints p50, p95,
p99 and failures per endpoint, and exits 1 when any endpoint's p99 is above ``--p99-ms`` or any
request failed (0 when the gate passes, 2 when it could not run).
"""

from __future__ import annotations

import argparse
import csv
import os
import secrets
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fraudscore.devtools import LocalServer, ensure_model  # noqa: E402


def read_stats(csv_path: Path) -> list[dict[str, str]]:
    with open(csv_path, newline="") as fh:
        return [row for row in csv.DictReader(fh) if row["Request Count"] != "0"]


def verdict(rows: list[dict[str, str]], p99_ms: float) -> tuple[bool, list[str]]:
    """(passed, report lines) from Locust's per-endpoint statistics."""
    lines = [f"{'endpoint':<28} {'requests':>9} {'failures':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"]
    passed = bool(rows)
    for row in rows:
        name = "all" if row["Name"] == "Aggregated" else f"{row['Type']} {row['Name']}"
        requests, failures, p99 = int(row["Request Count"]), int(row["Failure Count"]), float(row["99%"])
        flags = []
        if failures:
            flags.append("FAILURES")
        if p99 > p99_ms:
            flags.append(f"p99 > {p99_ms:g} ms")
        passed &= not flags
        lines.append(f"{name:<28} {requests:>9} {failures:>9} {float(row['50%']):>8.0f} "
                     f"{float(row['95%']):>8.0f} "
                     f"{p99:>8.0f}  {' '.join(flags)}")
    return passed, lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="", help="target base URL; empty: start the service here")
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--spawn-rate", type=float, default=20)
    ap.add_argument("--duration", default="60s", help="Locust's --run-time, e.g. 20s, 2m")
    ap.add_argument("--p99-ms", type=float, default=200.0)
    ap.add_argument("--out", type=Path,
                    default=ROOT / "results" / f"loadtest-{time.strftime('%Y%m%d-%H%M%S')}")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    env = {**os.environ}
    if args.host:
        if not env.get("FRAUD_API_KEY"):
            print("error: set FRAUD_API_KEY to a key the target accepts", file=sys.stderr)
            return 2
        server = nullcontext()
    else:
        env.update(FRAUD_API_KEY=secrets.token_urlsafe(24), FRAUD_ENV_FILE="")
        ensure_model(env)
        server = LocalServer({"FRAUD_API_KEYS": env["FRAUD_API_KEY"], "FRAUD_ENV_FILE": ""},
                             args.out / "server.log")
    with server as srv:
        host = args.host or srv.url
        print(f"load test: {args.users} users (spawn {args.spawn_rate:g}/s) for {args.duration} "
              f"against {host}; "
              f"gate: p99 <= {args.p99_ms:g} ms and no failure", flush=True)
        cmd = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "locustfile.py"), "--headless",
               "--host", host, "-u", str(args.users), "-r", str(args.spawn_rate), "-t", args.duration,
               "--csv", str(args.out / "stats"), "--html", str(args.out / "report.html"),
               "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "10"]
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)  # noqa: S603
        (args.out / "locust.log").write_text(done.stdout + done.stderr)
    stats = args.out / "stats_stats.csv"
    if not stats.exists():
        print(f"error: Locust wrote no statistics (exit {done.returncode}); see {args.out / 'locust.log'}",
              file=sys.stderr)
        return 2
    passed, lines = verdict(read_stats(stats), args.p99_ms)
    print("\n".join(lines))
    print(f"\nreport: {args.out / 'report.html'}  statistics: {args.out}/stats_*.csv")
    print("GATE PASSED" if passed else "GATE FAILED")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
