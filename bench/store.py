"""The decision store under load: what recording costs the request path, how fast the writer
drains into PostgreSQL and SQLite (one process and two at once, as two workers), and how much the
writer thread delays the event loop.

    flock /tmp/bench.lock .venv/bin/python bench/store.py            # everything, ~3 min
    flock /tmp/bench.lock .venv/bin/python bench/store.py --only loop --runs 5

PostgreSQL: a scratch database on 127.0.0.1:5432 (``--pg``), dropped after. Every figure is the
median of ``--runs`` runs; rows are counted after each run (0 lost or the run fails).

Event-loop lateness (bench/store_lateness.py): how late a callback on a uvloop loop runs after a
datagram sent every millisecond, with the decision log off, and recording 5 decisions per datagram
(5,000/s) that the writer thread writes to PostgreSQL under several switch intervals; then the
writer's encoding alone (no database), and the same stream written by another process.
"""

from __future__ import annotations

import argparse
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from bench.store_lateness import VERDICT, X, lateness  # noqa: E402
from fraudscore.store import writer as writer_mod  # noqa: E402
from fraudscore.store.engine import create_store_engine  # noqa: E402
from fraudscore.store.migrate import migrate  # noqa: E402
from fraudscore.store.records import make_record  # noqa: E402
from fraudscore.store.writer import DecisionLog  # noqa: E402


def records(n: int, prefix: str = "t"):
    return [make_record({**VERDICT, "transaction_id": f"{prefix}{i}"}, X[i % 1000], route="/fraud_score",
                        key_name="bench", latency_ms=0.8) for i in range(n)]


def count(url: str) -> int:
    engine = create_store_engine(url)
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM decisions")).scalar()
    engine.dispose()
    return n


def truncate(url: str) -> None:
    engine = create_store_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM decisions"))
    engine.dispose()


# --- throughput ---------------------------------------------------------------------------------
def _filled(url: str, n: int, method: str, batch: int, prefix: str):
    engine = create_store_engine(url)
    log = DecisionLog(engine, buffer=n + 1, batch_max=batch, method=method, migrate_first=False, start=False)
    for r in records(n, prefix):
        log.record(r)
    return engine, log


def _drain(engine, log, n: int) -> tuple[float, float]:
    cpu0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    log.start()
    report = log.close(timeout=600)
    elapsed = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    engine.dispose()
    assert report.written == n and report.dropped == 0, report
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    return n / elapsed, cpu / n * 1e6


def drain(url: str, n: int, method: str, batch: int, prefix: str = "t") -> tuple[float, float]:
    """Fill a log with n records, start its writer, wait until all are written: (records/s,
    process CPU µs per record)."""
    return _drain(*_filled(url, n, method, batch, prefix), n)


def child(url: str, n: int, prefix: str) -> None:
    """One of two processes: fill, say ready, wait for go, drain, print the seconds it took."""
    engine, log = _filled(url, n, "copy", writer_mod.BATCH_MAX, prefix)
    print("ready", flush=True)
    sys.stdin.readline()
    rate, _ = _drain(engine, log, n)
    print(n / rate, flush=True)


def two_processes(url: str, n: int) -> float:
    """Two processes drain n records each into one store at once: records/s together."""
    code = "import sys; sys.path.insert(0, sys.argv[1]); from bench.store import child; " \
           "child(sys.argv[2], int(sys.argv[3]), sys.argv[4])"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(ROOT), url, str(n), f"p{k}-"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for k in range(2)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        p.communicate(timeout=600)
    elapsed = time.perf_counter() - started
    assert all(p.returncode == 0 for p in procs)
    return 2 * n / elapsed


# --- the request path -----------------------------------------------------------------------------
def producer_cost(url: str) -> tuple[float, float, float]:
    """µs of the request path: make_record alone, record alone (writer idle), and both together
    in the producing thread's CPU time while the writer writes the same records to url."""
    row, v = X[3], {**VERDICT, "transaction_id": "x"}
    n = 100_000
    make = min(timeit.repeat(lambda: make_record(v, row, route="/fraud_score", key_name="k", latency_ms=1.0),
                             number=n, repeat=5)) / n * 1e6
    idle = DecisionLog(create_store_engine(url), buffer=10**7, migrate_first=False, start=False)
    r = make_record(v, row, route="/fraud_score", key_name="k", latency_ms=1.0)
    rec = min(timeit.repeat(lambda: idle.record(r), number=n, repeat=5)) / n * 1e6
    engine = create_store_engine(url)
    log = DecisionLog(engine, buffer=10**7, migrate_first=False)
    t0 = time.thread_time()
    for i in range(n):
        v["transaction_id"] = f"p{i}"
        log.record(make_record(v, X[i % 1000], route="/fraud_score", key_name="k", latency_ms=1.0))
    both = (time.thread_time() - t0) / n * 1e6
    assert log.close(timeout=600).written == n
    engine.dispose()
    return make, rec, both


def memory_per_record() -> float:
    import tracemalloc

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = records(100_000)
    size = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    tracemalloc.stop()
    return size


# --- main -------------------------------------------------------------------------------------------
def med(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test",
                   help="a server to make a scratch database on")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--seconds", type=float, default=8.0, help="length of one lateness run")
    p.add_argument("--only", choices=["producer", "throughput", "loop"], action="append")
    args = p.parse_args()
    only = set(args.only or ["producer", "throughput", "loop"])
    admin = create_engine(args.pg.replace("postgresql://", "postgresql+psycopg://"),
                          isolation_level="AUTOCOMMIT")
    db = f"fraudscore_bench_{secrets.token_hex(3)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    pg = args.pg.rsplit("/", 1)[0] + "/" + db
    tmp = tempfile.TemporaryDirectory()
    sqlite = f"sqlite:///{tmp.name}/store.db"
    try:
        for url in (pg, sqlite):
            migrate(url)
        if "producer" in only:
            costs = []
            for _ in range(args.runs):
                costs.append(producer_cost(pg))
                truncate(pg)
            print(f"request path: make_record {med([c[0] for c in costs]):.2f} µs, record "
                  f"{med([c[1] for c in costs]):.3f} µs (alone); both, while the writer writes them: "
                  f"{med([c[2] for c in costs]):.2f} µs of the producing thread's CPU; "
                  f"{memory_per_record():.0f} bytes a buffered record")
        if "throughput" in only:
            cases = [("PostgreSQL, binary COPY by numpy (pgcopy.py), batch 500", pg, "copy", 500),
                     ("PostgreSQL, binary COPY by numpy (pgcopy.py), batch 2000", pg, "copy", 2000),
                     ("PostgreSQL, binary COPY by psycopg write_row, batch 500", pg, "copy_rows", 500),
                     ("PostgreSQL, INSERT (insertmanyvalues), batch 500", pg, "insert", 500),
                     ("SQLite, executemany, batch 500", sqlite, "copy", 500)]
            for name, url, method, batch in cases:
                runs = []
                for _ in range(args.runs):
                    runs.append(drain(url, args.records, method, batch))
                    assert count(url) == args.records, "lost or duplicated rows"
                    truncate(url)
                print(f"one writer, {name}: {med([r[0] for r in runs]):,.0f} records/s, "
                      f"{med([r[1] for r in runs]):.1f} µs CPU a record")
            for name, url in (("PostgreSQL", pg), ("SQLite", sqlite)):
                rates = []
                for _ in range(args.runs):
                    rates.append(two_processes(url, args.records // 2))
                    assert count(url) == args.records, "lost or duplicated rows"
                    truncate(url)
                print(f"two processes at once, {name}: {med(rates):,.0f} records/s together, 0 lost")
        if "loop" in only:
            configs = [("log off", None, 0.005, "thread"),
                       ("log on, switch 5 ms (Python's default)", pg, 0.005, "thread"),
                       ("log on, switch 0.5 ms", pg, 0.0005, "thread"),
                       ("log on, switch 0.2 ms (the log's setting)", pg, 0.0002, "thread"),
                       ("log encoding only, no database, 0.2 ms", pg, 0.0002, "encode"),
                       ("log off, another process writes to PG", pg, 0.0002, "process")]
            results: dict[str, list[dict[str, float]]] = {c[0]: [] for c in configs}
            for _ in range(args.runs):  # configurations interleaved, so load drifts hit all alike
                for name, url, switch, mode in configs:
                    results[name].append(lateness(url, args.seconds, 5, switch, mode))
                    if url:
                        truncate(url)
            print(f"event-loop lateness, µs (5,000 decisions/s, {args.seconds:g} s a run, "
                  f"medians of {args.runs}):")
            for name, runs in results.items():
                m = {k: med([r[k] for r in runs]) for k in ("p50", "p99", "p999", "max", "written")}
                print(f"  {name:42s} p50 {m['p50']:6.0f}  p99 {m['p99']:6.0f}  p99.9 {m['p999']:6.0f}"
                      f"  max {m['max']:7.0f}  written {m['written']:,.0f}")
    finally:
        tmp.cleanup()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
