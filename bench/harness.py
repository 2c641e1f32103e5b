"""Pieces of `make bench`: request bodies, wrk runs, servers, and side-by-side comparisons."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fraudscore.devtools import LocalServer  # noqa: E402
from fraudscore.features import FEATURES  # noqa: E402
from fraudscore.training.data import generate  # noqa: E402


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
    """1,000 stand-in transactions, 5% fraud-like (the default traffic mix), one JSON a line,
    and four 1,000-transaction batches of them."""
    data = generate(30_000, seed=11)
    frauds = [i for i in range(len(data.y)) if data.y[i] == 1]
    picked = (frauds * 50)[:50] + list(range(950))
    txs = [{f: float(v) for f, v in zip(FEATURES, data.X[i], strict=True)} | {"transaction_id": f"t{i}"}
           for i in picked]
    single = folder / "single.jsonl"
    single.write_text("".join(json.dumps(tx) + "\n" for tx in txs))
    batch = folder / "batch.jsonl"
    batch.write_text("".join(json.dumps({"transactions": txs[k:] + txs[:k]}) + "\n" for k in range(4)))
    return {"single": single, "batch": batch}


@dataclass(frozen=True)
class Load:
    """What wrk sends: singles to ``path``, a share of 1,000-row batches, at ``conns`` connections."""

    conns: int
    path: str = "/fraud_score"
    batch_permille: int = 0  # 1000: batches only

    @property
    def rows(self) -> float:
        return 1 + 999 * self.batch_permille / 1000


@dataclass
class Bench:
    wrk: str
    out: Path
    key: str
    bodies: dict[str, Path]
    base_env: dict[str, str]
    seconds: int
    warmup: int
    rows: list[dict] = field(default_factory=list)

    def run_wrk(self, url: str, load: Load, seconds: int, timeout_s: int = 15) -> dict:
        out = self.out / "cell.json"
        env = {**os.environ, "BENCH_KEY": self.key, "BENCH_PATH": load.path,
               "BENCH_SINGLE": str(self.bodies["single"]), "BENCH_BATCH": str(self.bodies["batch"]),
               "BENCH_BATCH_PERMILLE": str(load.batch_permille), "BENCH_OUT": str(out)}
        subprocess.run([self.wrk, f"-t{min(load.conns, 2)}", f"-c{load.conns}", f"-d{seconds}s",
                        "--timeout", f"{timeout_s}s", "-s", str(ROOT / "bench" / "wrk.lua"), url],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())

    def server(self, env: dict[str, str], name: str) -> LocalServer:
        return LocalServer({**self.base_env, **env}, self.out / f"server-{name}.log")

    def measure(self, srv: LocalServer, load: Load, **extra) -> dict:
        self.run_wrk(srv.url, load, self.warmup)
        r = self.run_wrk(srv.url, load, self.seconds, timeout_s=extra.pop("timeout_s", 15))
        rps = r["requests"] / (r["duration_us"] / 1e6)
        row = {"conns": load.conns, "req_s": rps, "p50_ms": r["p50_us"] / 1e3, "p99_ms": r["p99_us"] / 1e3,
               "max_ms": r["max_us"] / 1e3, "errors": r["socket_errors"] + r["non_2xx"],
               "timeouts": r["timeouts"], "by_kind": r["by_kind"],
               "worker_rss_mb": max(srv.worker_rss_mb(), default=0.0), "ready_s": srv.ready_seconds, **extra}
        self.rows.append(row)
        return row

    def compare(self, name: str, variants: dict[str, dict[str, str]], load: Load, rounds: int) -> dict:
        """Each variant on its own server, one after the other, ``rounds`` times: medians side by side."""
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        for r in range(rounds):
            for label, env in variants.items():
                with self.server(env, f"{name}-{label}-{r}".replace("/", "_").replace(" ", "_")) as srv:
                    row = self.measure(srv, load, comparison=name, variant=label, round=r)
                runs[label].append(row)
                print(f"  {name} / {label} round {r + 1}: {row['req_s']:8,.0f} req/s  "
                      f"p99 {row['p99_ms']:6.2f} ms  errors {row['errors']}", flush=True)
        summary = {label: {"req_s": statistics.median(x["req_s"] for x in rs),
                           "p99_ms": statistics.median(x["p99_ms"] for x in rs),
                           "errors": sum(x["errors"] for x in rs)} for label, rs in runs.items()}
        first = next(iter(summary.values()))
        for s in summary.values():
            s["ratio"] = s["req_s"] / first["req_s"]
            s["p99_delta_ms"] = s["p99_ms"] - first["p99_ms"]
        return summary
