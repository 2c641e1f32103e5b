"""Pieces of `make bench`: request bodies, wrk runs, servers, and side-by-side comparisons."""

from __future__ import annotations

import contextlib
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
    and four 1,000-transaction batches of them; and ``natural``: 5,000 stand-in transactions as
    they come, in the data set's own class ratio (9 frauds, 0.18%; the default model flags 17, 0.34%)."""
    data = generate(30_000, seed=11)
    frauds = [i for i in range(len(data.y)) if data.y[i] == 1]
    picked = (frauds * 50)[:50] + list(range(950))

    def tx(i: int) -> dict:
        return {f: float(v) for f, v in zip(FEATURES, data.X[i], strict=True)} | {"transaction_id": f"t{i}"}

    txs = [tx(i) for i in picked]
    single = folder / "single.jsonl"
    single.write_text("".join(json.dumps(t) + "\n" for t in txs))
    batch = folder / "batch.jsonl"
    batch.write_text("".join(json.dumps({"transactions": txs[k:] + txs[:k]}) + "\n" for k in range(4)))
    natural = folder / "natural.jsonl"
    natural.write_text("".join(json.dumps(tx(i)) + "\n" for i in range(10_000, 15_000)))
    return {"single": single, "batch": batch, "natural": natural}


@dataclass(frozen=True)
class Load:
    """What wrk sends: singles to ``path``, a share of 1,000-row batches, at ``conns`` connections,
    each waiting ``delay_ms`` after an answer before its next request (0: at once, the service
    saturated; a delay keeps it below its capacity)."""

    conns: int
    path: str = "/fraud_score"
    batch_permille: int = 0  # 1000: batches only
    delay_ms: int = 0
    mix: str = "single"  # the singles' bodies: "single" (5% fraud-like) or "natural" (write_bodies)

    @property
    def rows(self) -> float:
        return 1 + 999 * self.batch_permille / 1000


CONTROL = "{} again (control)"


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
               "BENCH_SINGLE": str(self.bodies[load.mix]), "BENCH_BATCH": str(self.bodies["batch"]),
               "BENCH_BATCH_PERMILLE": str(load.batch_permille), "BENCH_OUT": str(out),
               "BENCH_DELAY_MS": str(load.delay_ms)}
        subprocess.run([self.wrk, f"-t{min(load.conns, 2)}", f"-c{load.conns}", f"-d{seconds}s",
                        "--timeout", f"{timeout_s}s", "-s", str(ROOT / "bench" / "wrk.lua"), url],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())

    def server(self, env: dict[str, str], name: str) -> LocalServer:
        return LocalServer({**self.base_env, **env}, self.out / f"server-{name}.log")

    def measure(self, srv: LocalServer, load: Load, warmup: bool = True, **extra) -> dict:
        if warmup:
            self.run_wrk(srv.url, load, self.warmup)
        r = self.run_wrk(srv.url, load, self.seconds, timeout_s=extra.pop("timeout_s", 15))
        rps = r["requests"] / (r["duration_us"] / 1e6)
        row = {"conns": load.conns, "req_s": rps, "requests": r["requests"], "p50_ms": r["p50_us"] / 1e3, "p99_ms": r["p99_us"] / 1e3,
               "max_ms": r["max_us"] / 1e3, "errors": r["socket_errors"] + r["non_2xx"],
               "timeouts": r["timeouts"], "by_kind": r["by_kind"],
               "worker_rss_mb": max(srv.worker_rss_mb(), default=0.0), "ready_s": srv.ready_seconds, **extra}
        self.rows.append(row)
        return row

    def compare(self, name: str, variants: dict[str, dict[str, str]], load: Load, rounds: int,
                control: bool = True) -> dict:
        """Every variant on its own server, all started at once (an idle server costs nothing);
        then ``rounds`` rounds in which each is loaded in turn (the order reversed every other
        round). Each round's figures are taken relative to the first variant's in the same round,
        seconds apart, and the medians of those ratios are reported: this machine's speed drifts by
        tens of percent over minutes, which a comparison of cells minutes apart cannot tell from
        the variants' own difference. CPU per request: the workers (``worker_us``), their child
        processes (``child_us``, the decision log's writer) and the local PostgreSQL server
        (``pg_us``, 0 when it is not used).

        ``control``: the first variant once more, on a server of its own started last (label
        CONTROL). Identical servers are not equally fast here: over 60 rounds one ran at 0.945 of
        its twin (2026-12-01), so a variant's ratio means something only as far as it is beyond the
        control's."""
        first_label, first_env = next(iter(variants.items()))
        if control:
            variants = {**variants, CONTROL.format(first_label): first_env}
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        with contextlib.ExitStack() as stack:
            servers = {label: stack.enter_context(self.server(env, f"{name}-{label}".replace("/", "_")
                                                                 .replace(" ", "_")))
                       for label, env in variants.items()}
            for srv in servers.values():
                self.run_wrk(srv.url, load, self.warmup)
            for r in range(rounds):
                order = list(servers.items())
                for label, srv in order if r % 2 == 0 else order[::-1]:
                    before = _cpu_seconds(srv)
                    row = self.measure(srv, load, warmup=False, comparison=name, variant=label, round=r)
                    after = _cpu_seconds(srv)
                    for part in after:
                        row[f"{part}_us"] = (after[part] - before[part]) / max(row["requests"], 1) * 1e6
                    runs[label].append(row)
                print(f"  {name} round {r + 1}: " + "  ".join(
                    f"{label} {rs[-1]['req_s']:,.0f} req/s p99 {rs[-1]['p99_ms']:.2f} ms" for label, rs in runs.items()),
                    flush=True)
        first = runs[next(iter(runs))]
        summary = {}
        for label, rs in runs.items():
            pairs = list(zip(rs, first, strict=True))  # this variant and the first, same round
            ratios = [x["req_s"] / f["req_s"] for x, f in pairs]
            summary[label] = {
                **{k: statistics.median(x[k] for x in rs) for k in ("req_s", "p99_ms", "worker_us", "child_us", "pg_us")},
                "errors": sum(x["errors"] for x in rs), "ratio": statistics.median(ratios),
                "ratio_range": (min(ratios), max(ratios)),
                "p99_delta_ms": statistics.median(x["p99_ms"] - f["p99_ms"] for x, f in pairs)}
        return summary


_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int | str) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _children(pid: int | str) -> list[str]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return path.read_text().split()
    except OSError:
        return []


def _cpu_seconds(srv: LocalServer) -> dict[str, float]:
    """CPU seconds used so far by the server's workers, the workers' children, and PostgreSQL."""
    workers = _children(srv.proc.pid)
    pg = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True, check=False).stdout.split()  # noqa: S607
    return {"worker": sum(map(_proc_cpu, workers)),
            "child": sum(_proc_cpu(c) for w in workers for c in _children(w)),
            "pg": sum(map(_proc_cpu, pg)) if srv.env.get("FRAUD_STORE_URL", "").startswith("postgresql") else 0.0}
