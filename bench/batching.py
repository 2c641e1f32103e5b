"""Adaptive batching on vs off for /fraud_score/batch, side by side in one run.

    .venv/bin/python bench/batching.py [--seconds 8] [--concurrency 16]
    .venv/bin/python bench/batching.py --sequential 2000   # one client on /fraud_score instead

Starts `bentoml serve` (production configuration.yaml, 2 workers) on a free loopback port, once
with FRAUD_ADAPTIVE_BATCHING=false and once with true, against the current model store, and drives
it from this process with keep-alive clients. Prints a Markdown table: rows per request,
requests/s, transactions/s, p50/p99 latency, errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fraudscore.data import generate  # noqa: E402
from fraudscore.features import FEATURES  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env_extra: dict[str, str], key: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "FRAUD_API_KEYS": key, "FRAUD_ENV_FILE": "", "BENTOML_DO_NOT_TRACK": "True",
           "BENTOML_CONFIG": str(ROOT / "configuration.yaml"), **env_extra}
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/bentoml"), "serve", "service:FraudScorer", "--working-dir", str(ROOT),
         "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop(proc)
    raise SystemExit("server did not become ready")


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


async def drive(url: str, key: str, body: bytes, seconds: float, concurrency: int) -> dict:
    latencies: list[float] = []
    errors = 0
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:
        async def worker(until: float) -> None:
            nonlocal errors
            while time.perf_counter() < until:
                t0 = time.perf_counter()
                r = await client.post("/fraud_score/batch", content=body)
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code != 200

        await asyncio.gather(*(worker(time.perf_counter() + 1.5) for _ in range(concurrency)))  # warm-up
        latencies.clear()
        errors = 0
        start = time.perf_counter()
        await asyncio.gather(*(worker(start + seconds) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / elapsed, "p50": q[49] * 1e3, "p99": q[98] * 1e3, "errors": errors}


def sequential(url: str, key: str, body: bytes, n: int) -> dict:
    """One client, ``n`` sequential requests to /fraud_score after 200 warm-up."""
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    with httpx.Client(base_url=url, headers=headers) as client:
        for _ in range(200):
            client.post("/fraud_score", content=body)
        latencies, errors = [], 0
        for _ in range(n):
            t0 = time.perf_counter()
            errors += client.post("/fraud_score", content=body).status_code != 200
            latencies.append(time.perf_counter() - t0)
    q = statistics.quantiles(latencies, n=100)
    return {"p50": q[49] * 1e3, "p99": q[98] * 1e3, "max": max(latencies) * 1e3, "errors": errors}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--sequential", type=int, default=0, help="measure one sequential client instead")
    args = ap.parse_args()
    data = generate(20_000, seed=1)
    key = secrets.token_urlsafe(24)
    if args.sequential:
        body = json.dumps({f: float(v) for f, v in zip(FEATURES, data.X[0], strict=True)}).encode()
        print("| adaptive batching | p50 ms | p99 ms | max ms | errors |\n|---|---|---|---|---|")
        for mode in ("false", "true"):
            proc, url = start_server({"FRAUD_ADAPTIVE_BATCHING": mode}, key)
            try:
                r = sequential(url, key, body, args.sequential)
            finally:
                stop(proc)
            print(f"| {'on' if mode == 'true' else 'off'} | {r['p50']:.2f} | {r['p99']:.2f} "
                  f"| {r['max']:.1f} | {r['errors']} |")
        return
    rows = []
    for mode in ("false", "true"):
        proc, url = start_server({"FRAUD_ADAPTIVE_BATCHING": mode}, key)
        try:
            for size in map(int, args.sizes.split(",")):
                txs = [{f: float(v) for f, v in zip(FEATURES, data.X[i], strict=True)} for i in range(size)]
                body = json.dumps({"transactions": txs}).encode()
                res = asyncio.run(drive(url, key, body, args.seconds, args.concurrency))
                rows.append((mode, size, res))
        finally:
            stop(proc)
    print(f"\n/fraud_score/batch, {args.concurrency} concurrent keep-alive clients, "
          f"{args.seconds:g} s each\n")
    print("| adaptive batching | rows/request | req/s | transactions/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for mode, size, r in rows:
        print(f"| {'on' if mode == 'true' else 'off'} | {size} | {r['rps']:.0f} | {r['rps'] * size:,.0f} "
              f"| {r['p50']:.1f} | {r['p99']:.1f} | {r['errors']} |")


if __name__ == "__main__":
    main()
