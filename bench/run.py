"""`make bench`: the service under load, configurations side by side in one run.

    make bench                                            # every section (~15 min)
    make bench BENCH_ARGS="--sections ratelimit,overload --seconds 8"
    .venv/bin/python bench/run.py --help

Each configuration runs on its own `bentoml serve` (production configuration.yaml, 2 workers) on a
free loopback port, loaded by wrk (C, its own process, same 2 cores) after a warm-up. Requests
cycle through 1,000 stand-in transactions, 5% of them fraud-like. Comparisons start every
variant's server at once and load them in turn, round after round, and report the median of each
round's ratio to the first variant, because this machine's speed drifts by tens of percent within
minutes (Bench.compare). Latency by request kind and status comes
from each request's send time echoed in X-Request-ID (bench/wrk.lua). Results: a Markdown report
and the raw figures in results/bench-<time>/.

Sections: table (routes x connections), ratelimit (off / in memory / Redis), batching (adaptive
batching off / on), overload (1,000 connections: shed fast, answer everyone), mixed (single
transactions alone vs with 5% of 1,000-row batches), reasons (reason codes off / on, at 5% fraud-like
and at the data set's class ratio), decisionlog
(off / SQLite / PostgreSQL, saturated and below capacity), ingest (decisions/s from one instance into PostgreSQL, none lost),
watch (drift off / on / on with alerts to a receiver that is down).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from harness import ROOT, Bench, Load, write_bodies, wrk_binary

from fraudscore.devtools import ensure_model

NO_LIMIT = {"FRAUD_RATE_LIMIT": "off"}
SECTIONS = ("table", "ratelimit", "batching", "overload", "mixed", "reasons", "decisionlog", "ingest", "watch")
COMPARED = ("ratelimit", "batching", "mixed", "reasons", "decisionlog", "watch")
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _up(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def table(b: Bench, report: list[str]) -> None:
    report += ["## Routes and connections (defaults, rate limit off)", "",
               "| route | connections | req/s | transactions/s | p50 ms | p99 ms | errors | worker RSS MB |",
               "|---|---|---|---|---|---|---|---|"]
    cells = [("single", Load(1)), ("single", Load(20)), ("single", Load(64)),
             ("legacy", Load(20, path="/v1/fraud-score")), ("batch 1,000", Load(1, batch_permille=1000)),
             ("batch 1,000", Load(20, batch_permille=1000))]
    with b.server(NO_LIMIT, "table") as srv:
        for name, load in cells:
            r = b.measure(srv, load, section="table", route=name)
            report.append(f"| {name} | {load.conns} | {r['req_s']:,.0f} | {r['req_s'] * load.rows:,.0f} "
                          f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {r['worker_rss_mb']:.0f} |")
            print(f"  table {name} c={load.conns}: {r['req_s']:,.0f} req/s p99 {r['p99_ms']:.2f} ms", flush=True)
        ready = srv.ready_seconds
    report += ["", f"/readyz answered 200 {ready:.1f} s after `bentoml serve` started.", ""]


def _comparison(report: list[str], title: str, summary: dict) -> None:
    report += [f"## {title}", "", "| variant | req/s (median) | ratio (range) | p99 ms (median) | p99 change ms "
               "| CPU µs a request: workers / their children / PostgreSQL | errors |", "|---|---|---|---|---|---|---|"]
    for label, s in summary.items():
        low, high = s["ratio_range"]
        report.append(f"| {label} | {s['req_s']:,.0f} | {s['ratio']:.3f} ({low:.2f}-{high:.2f}) | {s['p99_ms']:.2f} "
                      f"| {s['p99_delta_ms']:+.2f} | {s['worker_us']:.0f} / {s['child_us']:.0f} / {s['pg_us']:.0f} "
                      f"| {s['errors']} |")
    report += ["", "Ratio and p99 change: medians over the rounds of each variant against the first one "
               "loaded seconds before or after it. The control is the first variant again on a server of its own: "
               "what two identical servers differ by in this run, the resolution of the other rows.", ""]


def ratelimit(b: Bench, report: list[str], rounds: int) -> None:
    variants = {"off": NO_LIMIT, "in memory": {"FRAUD_RATE_LIMIT": "1000000/second"}}
    if _up(6379):
        variants["Redis"] = {"FRAUD_RATE_LIMIT": "1000000/second",
                             "FRAUD_RATE_LIMIT_STORAGE": "redis://127.0.0.1:6379/14"}
    _comparison(report, "Rate limiting (single transactions, 20 connections; a limit no request reaches)",
                b.compare("ratelimit", variants, Load(20), rounds))


def batching(b: Bench, report: list[str], rounds: int) -> None:
    variants = {"off": {**NO_LIMIT, "FRAUD_ADAPTIVE_BATCHING": "false"},
                "on": {**NO_LIMIT, "FRAUD_ADAPTIVE_BATCHING": "true"}}
    _comparison(report, "Adaptive batching (single transactions, 64 connections)",
                b.compare("batching", variants, Load(64), rounds))


def _kind(r: dict, key: str) -> dict:
    return r["by_kind"].get(key, {"count": 0, "p50_us": 0, "p99_us": 0, "max_us": 0})


def overload(b: Bench, report: list[str]) -> None:
    with b.server(NO_LIMIT, "overload") as srv:
        r = b.measure(srv, Load(1000), section="overload", timeout_s=5)
    ok, shed = _kind(r, "single 200"), _kind(r, "single 503")
    report += ["## Overload: 1,000 connections of single transactions (wrk timeout 5 s)", "",
               "| req/s | answered 200 | shed 503 | other errors | client time-outs | p99 of 200 ms "
               "| p50 / p99 of 503 ms | p99 all ms |", "|---|---|---|---|---|---|---|---|",
               f"| {r['req_s']:,.0f} | {ok['count']:,} | {shed['count']:,} "
               f"| {r['errors'] - shed['count'] - r['timeouts']} | {r['timeouts']} | {ok['p99_us'] / 1e3:.1f} "
               f"| {shed['p50_us'] / 1e3:.1f} / {shed['p99_us'] / 1e3:.1f} | {r['p99_ms']:.1f} |", ""]
    print(f"  overload: {r['req_s']:,.0f} req/s, 200 p99 {ok['p99_us'] / 1e3:.1f} ms, "
          f"503 {shed['count']} p99 {shed['p99_us'] / 1e3:.1f} ms, timeouts {r['timeouts']}", flush=True)


def mixed(b: Bench, report: list[str], rounds: int) -> None:
    report += ["## Large batches beside single transactions (20 connections)", "",
               "| round | singles alone: p99 ms | with 5% 1,000-row batches: singles p99 ms | ratio "
               "| batches p99 ms |", "|---|---|---|---|---|"]
    ratios = []
    with b.server(NO_LIMIT, "mixed") as srv:
        for r in range(rounds):
            alone = _kind(b.measure(srv, Load(20), section="mixed", variant="alone"), "single 200")
            mix = b.measure(srv, Load(20, batch_permille=50), section="mixed", variant="5% batches")
            single, batch = _kind(mix, "single 200"), _kind(mix, "batch 200")
            ratios.append(single["p99_us"] / max(alone["p99_us"], 1))
            report.append(f"| {r + 1} | {alone['p99_us'] / 1e3:.2f} | {single['p99_us'] / 1e3:.2f} "
                          f"| {ratios[-1]:.2f} | {batch['p99_us'] / 1e3:.1f} |")
            print(f"  mixed round {r + 1}: singles p99 {alone['p99_us'] / 1e3:.2f} -> "
                  f"{single['p99_us'] / 1e3:.2f} ms", flush=True)
    report += ["", f"Median ratio: {sorted(ratios)[len(ratios) // 2]:.2f}", ""]


def reasons(b: Bench, report: list[str], rounds: int) -> None:
    variants = {"no reasons": {**NO_LIMIT, "FRAUD_REASONS_TOP_K": "0"},
                "reasons for review and block (default)": NO_LIMIT}
    _comparison(report, "Reason codes (single transactions, 20 connections, 5% fraud-like)",
                b.compare("reasons", variants, Load(20), rounds))
    # the same with the data set's own class ratio: what reasons cost real card traffic
    _comparison(report, "Reason codes at the data set's class ratio (single transactions, 20 connections, "
                "0.18% fraud, 0.34% flagged)", b.compare("reasons-natural", variants, Load(20, mix="natural"), rounds))


@contextlib.contextmanager
def _pg_database():
    """A PostgreSQL database of its own (dropped after), or None when no server answers."""
    if not _up(5432):
        yield None
        return
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"fraudscore_bench_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def decisionlog(b: Bench, report: list[str], rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="fraudscore-bench-") as data, _pg_database() as pg:
        thread = {"FRAUD_DECISION_WRITER": "thread"}
        variants = {"off": {**NO_LIMIT, "FRAUD_DECISION_LOG": "false"},
                    "SQLite, writer process (default)": {**NO_LIMIT, "FRAUD_DATA_DIR": data},
                    "SQLite, writer thread": {**NO_LIMIT, **thread, "FRAUD_DATA_DIR": f"{data}/thread"}}
        if pg:
            variants["PostgreSQL, writer process (default)"] = {**NO_LIMIT, "FRAUD_STORE_URL": pg}
            variants["PostgreSQL, writer thread"] = {**NO_LIMIT, **thread, "FRAUD_STORE_URL": pg}
        _comparison(report, "Decision log (single transactions, 20 connections)",
                    b.compare("decisionlog", variants, Load(20), rounds))
        # the same below the service's capacity: each connection pauses 2 ms between requests
        # (about 60% of what the service answers saturated on the 2-core VM)
        _comparison(report, "Decision log below capacity (single transactions, 20 connections, 2 ms pauses)",
                    b.compare("decisionlog-paced", variants, Load(20, delay_ms=2), rounds))


def watch(b: Bench, report: list[str], rounds: int) -> None:
    down = {"FRAUD_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/alerts",  # the discard port: refused
            "FRAUD_ALERT_SECRET": secrets.token_urlsafe(32)}
    variants = {"drift off, no alerts": {**NO_LIMIT, "FRAUD_DRIFT_WINDOW": "0"},
                "drift on (default)": NO_LIMIT,
                "drift on, alerts to a receiver that is down": {**NO_LIMIT, **down}}
    _comparison(report, "Drift and alerts (single transactions, 20 connections, 5% fraud-like: ~5% alert)",
                b.compare("watch", variants, Load(20), rounds))


def _stored_decisions(url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM decisions")).scalar_one()
    engine.dispose()
    return n


def _sum(metrics: str, prefix: str) -> float:
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in metrics.splitlines() if ln.startswith(prefix))


def ingest(b: Bench, report: list[str]) -> None:
    with _pg_database() as pg:
        if pg is None:
            report += ["## Sustained ingest into PostgreSQL", "", "skipped: no PostgreSQL on 127.0.0.1:5432", ""]
            return
        with b.server({**NO_LIMIT, "FRAUD_STORE_URL": pg}, "ingest") as srv:
            r = b.measure(srv, Load(4, batch_permille=1000), section="ingest")
            answered = _kind(r, "batch 200")["count"]
            # everything decided (warm-up and requests still in flight when wrk stopped included)
            # must reach the store: wait for the writers, reading both sides until they agree
            deadline = time.monotonic() + 120
            while True:
                time.sleep(1.0)
                text = urllib.request.urlopen(f"{srv.url}/metrics", timeout=10).read().decode()  # noqa: S310
                decided = _sum(text, "fraud_decisions_total{")
                dropped = _sum(text, "fraud_decision_log_dropped_total")
                stored = _stored_decisions(pg)
                if stored >= decided or time.monotonic() > deadline:
                    break
    rate = answered * 1000 / b.seconds
    report += ["## Sustained ingest: one 2-worker instance into PostgreSQL (1,000-row batches, 4 connections)",
               "", "| decisions/s answered | decided (metrics) | stored | lost | dropped (counted) |",
               "|---|---|---|---|---|",
               f"| {rate:,.0f} | {decided:,.0f} | {stored:,} | {decided - stored:,.0f} | {dropped:,.0f} |", ""]
    print(f"  ingest: {rate:,.0f} decisions/s, decided {decided:,.0f}, stored {stored:,}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"any of {', '.join(SECTIONS)}")
    ap.add_argument("--seconds", type=int, default=6, help="measured time per cell")
    ap.add_argument("--warmup", type=int, default=3, help="unmeasured load before each cell")
    ap.add_argument("--rounds", type=int, default=6, help="rounds of each comparison")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args()
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s): {', '.join(sorted(unknown))}")

    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out / f"bench-{stamp}"
    out.mkdir(parents=True)
    key = secrets.token_urlsafe(24)
    base_env = {"FRAUD_API_KEYS": key, "FRAUD_MODEL_TAG": "fraud_detector:latest",
                # the decision log's SQLite file of this run only, not the developer's data/
                "FRAUD_DATA_DIR": tempfile.mkdtemp(prefix="fraudscore-bench-data-"),
                "BENTOML_HOME": os.environ.get("BENTOML_HOME", str(Path.home() / "bentoml"))}
    try:
        ensure_model({**os.environ, **base_env})
    except subprocess.CalledProcessError:  # the user's store cannot be written: use a private one
        base_env["BENTOML_HOME"] = tempfile.mkdtemp(prefix="fraudscore-bench-")
        ensure_model({**os.environ, **base_env})
    b = Bench(wrk_binary(), out, key, write_bodies(out), base_env, args.seconds, args.warmup)

    machine = f"{os.cpu_count()} cores, {os.uname().machine}, Linux {os.uname().release}"
    report = [f"# make bench {stamp}", "", f"{machine}; wrk on the same cores; {args.seconds} s per cell "
              f"after {args.warmup} s of warm-up; comparisons: every variant's server up at once, loaded in turn "
              f"for {args.rounds} rounds, medians of the per-round ratios.", ""]
    for section in args.sections.split(","):
        print(f"{section} ...", flush=True)
        fn = globals()[section]
        fn(b, report, args.rounds) if section in COMPARED else fn(b, report)
    (out / "bench.md").write_text("\n".join(report) + "\n")
    (out / "bench.json").write_text(json.dumps({"rows": b.rows}, indent=1))
    print("\n" + "\n".join(report) + f"\nwritten to {out}/bench.md and bench.json")


if __name__ == "__main__":
    main()
