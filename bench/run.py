"""`make bench`: the service under load, configurations side by side in one run.

    make bench                                   # every configuration, 15 s a cell
    make bench BENCH_ARGS="--seconds 5 --engines onnx --concurrency 20"
    .venv/bin/python bench/run.py --help

For each engine (ONNX Runtime, scikit-learn) and adaptive batching (off, on) it starts `bentoml
serve` with the production configuration.yaml (2 workers) on a free loopback port, then drives
`/fraud_score` (one transaction a request, 1,000 varied stand-in transactions in turn) and
`/fraud_score/batch` (1,000 transactions a request) at 1, 20 and 64 keep-alive connections with
wrk, a C load generator in its own process, after a warm-up. It prints one Markdown table (req/s,
transactions/s, p50, p95, p99, errors, worker RSS, time to /readyz) and writes it with the raw
figures as JSON to results/bench-<time>/. The model comes from the current store when it has
``fraud_detector``, else it is trained once into a temporary store (about 30 s).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fraudscore.devtools import LocalServer, ensure_model  # noqa: E402
from fraudscore.features import FEATURES  # noqa: E402
from fraudscore.training.data import generate  # noqa: E402

ENDPOINTS = {"single": ("/fraud_score", 1), "batch": ("/fraud_score/batch", 1000)}


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk (Debian package) ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)  # noqa: S607
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)  # noqa: S607
        return shutil.which("wrk") or sys.exit("wrk did not install")
    sys.exit("bench needs wrk (apt-get install wrk / brew install wrk)")


def write_bodies(folder: Path) -> dict[str, Path]:
    data = generate(30_000, seed=11)
    frauds = [i for i in range(len(data.y)) if data.y[i] == 1]
    picked = (frauds * 50)[:50] + list(range(950))  # 5% fraud-like rows, as a hard case mix
    txs = [{f: float(v) for f, v in zip(FEATURES, data.X[i], strict=True)} | {"transaction_id": f"t{i}"}
           for i in picked]
    single = folder / "single.jsonl"
    single.write_text("".join(json.dumps(tx) + "\n" for tx in txs))
    batch = folder / "batch.jsonl"
    batch.write_text("".join(json.dumps({"transactions": txs[k:] + txs[:k]}) + "\n" for k in range(4)))
    return {"single": single, "batch": batch}


def run_wrk(wrk: str, url: str, key: str, path: str, bodies: Path, conns: int, seconds: int,
            out: Path) -> dict:
    env = {**os.environ, "BENCH_KEY": key, "BENCH_PATH": path, "BENCH_BODIES": str(bodies),
           "BENCH_OUT": str(out)}
    threads = min(conns, 2)
    subprocess.run([wrk, f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--timeout", "15s",
                    "-s", str(ROOT / "bench" / "wrk.lua"), url],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=15, help="measured time per cell")
    ap.add_argument("--warmup", type=int, default=3, help="unmeasured load before each cell")
    ap.add_argument("--engines", default="onnx,sklearn")
    ap.add_argument("--batching", default="off,on")
    ap.add_argument("--concurrency", default="1,20,64")
    ap.add_argument("--endpoints", default="single,batch")
    ap.add_argument("--extra-config", action="append", default=[], metavar="NAME=ENV=VALUE",
                    help="also run ONNX/off with one environment change, e.g. "
                         "accesslog=BENTOML_CONFIG=/path/with-access-log.yaml")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args()

    wrk = wrk_binary()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out / f"bench-{stamp}"
    out.mkdir(parents=True)
    key = secrets.token_urlsafe(24)
    base_env = {"FRAUD_API_KEYS": key, "FRAUD_ENV_FILE": "", "FRAUD_MODEL_TAG": "fraud_detector:latest"}
    base_env.setdefault("BENTOML_HOME", os.environ.get("BENTOML_HOME", str(Path.home() / "bentoml")))
    try:
        ensure_model({**os.environ, **base_env})
    except subprocess.CalledProcessError:  # the user's store cannot be written: use a private one
        base_env["BENTOML_HOME"] = tempfile.mkdtemp(prefix="fraudscore-bench-")
        ensure_model({**os.environ, **base_env})
    bodies = write_bodies(out)

    configs = [(e, b, {"FRAUD_ENGINE": e, "FRAUD_ADAPTIVE_BATCHING": "true" if b == "on" else "false"})
               for e in args.engines.split(",") for b in args.batching.split(",")]
    for extra in args.extra_config:
        name, var, value = extra.split("=", 2)
        configs.append(("onnx", f"off, {name}", {"FRAUD_ENGINE": "onnx", "FRAUD_ADAPTIVE_BATCHING": "false",
                                                 var: value}))
    rows = []
    for engine, batching, env in configs:
        label = f"{engine} / batching {batching}"
        print(f"{label}: starting server ...", flush=True)
        with LocalServer({**base_env, **env}, out / f"server-{engine}-{batching}.log") as srv:
            for endpoint in args.endpoints.split(","):
                path, size = ENDPOINTS[endpoint]
                for conns in map(int, args.concurrency.split(",")):
                    run_wrk(wrk, srv.url, key, path, bodies[endpoint], conns, args.warmup,
                            out / "warmup.json")
                    r = run_wrk(wrk, srv.url, key, path, bodies[endpoint], conns, args.seconds,
                                out / "cell.json")
                    rps = r["requests"] / (r["duration_us"] / 1e6)
                    row = {"engine": engine, "batching": batching, "endpoint": endpoint, "rows": size,
                           "concurrency": conns, "req_s": rps, "tx_s": rps * size,
                           "p50_ms": r["p50_us"] / 1e3, "p95_ms": r["p95_us"] / 1e3,
                           "p99_ms": r["p99_us"] / 1e3,
                           "max_ms": r["max_us"] / 1e3, "errors": r["socket_errors"] + r["non_2xx"],
                           "worker_rss_mb": max(srv.worker_rss_mb(), default=0.0),
                           "ready_s": srv.ready_seconds}
                    rows.append(row)
                    print(f"  {endpoint:6} c={conns:<3} {rps:8,.0f} req/s  p99 {row['p99_ms']:7.2f} ms  "
                          f"errors {row['errors']}", flush=True)

    header = ("| engine | adaptive batching | endpoint | connections | req/s | transactions/s | p50 ms "
              "| p95 ms | p99 ms | errors | worker RSS MB | /readyz s |")
    lines = [header, "|" + "---|" * 12]
    for r in rows:
        lines.append(f"| {r['engine']} | {r['batching']} | {r['endpoint']} ({r['rows']:,} tx) "
                     f"| {r['concurrency']} "
                     f"| {r['req_s']:,.0f} | {r['tx_s']:,.0f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} "
                     f"| {r['p99_ms']:.2f} | {r['errors']} | {r['worker_rss_mb']:.0f} | {r['ready_s']:.1f} |")
    machine = f"{os.cpu_count()} cores, {os.uname().machine}, {os.uname().release}"
    title = (f"bench {stamp}: {machine}; {args.seconds:g} s per cell after {args.warmup:g} s warm-up; "
             "wrk on the same machine")
    table = "\n".join([title, "", *lines])
    (out / "bench.md").write_text(table + "\n")
    (out / "bench.json").write_text(json.dumps({"title": title, "rows": rows}, indent=1))
    print("\n" + table + f"\n\nwritten to {out}/bench.md and bench.json")


if __name__ == "__main__":
    main()
