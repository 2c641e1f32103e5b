"""Event-loop lateness beside the decision log's writer thread (run by bench/store.py).

Another process sends a UDP datagram with its CLOCK_MONOTONIC time every millisecond; a callback
on a uvloop loop (as in the service) notes how late it runs: what a request arriving on a socket
waits before its handler can run.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fraudscore.store import writer as writer_mod  # noqa: E402
from fraudscore.store.engine import create_store_engine  # noqa: E402
from fraudscore.store.records import make_record  # noqa: E402
from fraudscore.store.writer import DecisionLog  # noqa: E402

X = np.random.default_rng(0).normal(size=(1_000, 30))
VERDICT = {"fraud_score": 3, "fraud_probability": 0.031, "is_fraud": False, "decision": "approve",
           "threshold": 10, "model_version": "fraud_detector:bench", "reasons": None}

SENDER = """
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + float(sys.argv[2])
nxt = time.monotonic()
while (now := time.monotonic()) < end:
    s.sendto(struct.pack("d", now), ("127.0.0.1", int(sys.argv[1])))
    nxt += 0.001
    time.sleep(max(0.0, nxt - time.monotonic()))
s.sendto(b"end", ("127.0.0.1", int(sys.argv[1])))
"""


FEEDER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from bench.store_lateness import VERDICT, X
from fraudscore.store.engine import create_store_engine
from fraudscore.store.records import make_record
from fraudscore.store.writer import DecisionLog
log = DecisionLog(create_store_engine(sys.argv[2]), migrate_first=False)
end, i, v = time.monotonic() + float(sys.argv[3]), 0, dict(VERDICT)
while time.monotonic() < end:
    for _ in range(5):
        i += 1
        v["transaction_id"] = f"f{i}"
        log.record(make_record(v, X[i % 1000], route="/fraud_score", key_name="k", latency_ms=1.0))
    time.sleep(0.001)
log.close(60)
"""


def _encode_only(self, batch) -> None:  # the writer's Python work without a database
    from fraudscore.store import pgcopy

    pgcopy.encode(batch)


def lateness(url: str | None, seconds: float, per_tick: int, switch: float, mode: str = "thread",
             ) -> dict[str, float]:
    """p50/p99/max (µs) of datagram -> callback delay. mode "thread": per_tick records per datagram
    into a DecisionLog writing to url (None: decision log off); "encode": the same log encoding
    its batches but writing nothing; "process": the log off here while another process writes
    the same stream to url (the database's and the writer's CPU without this process's GIL)."""
    import struct

    import uvloop

    from fraudscore.store import batches

    sys.setswitchinterval(switch)
    writer_mod.SWITCH_INTERVAL_S = switch  # the log lowers it to this on start (only lowers)
    log, feeder, real_write = None, None, batches.BatchWriter.write
    if mode == "process":
        feeder = subprocess.Popen([sys.executable, "-c", FEEDER, str(ROOT), url, str(seconds + 1)])
        time.sleep(1.0)
        url = None
    if mode == "encode":
        batches.BatchWriter.write = _encode_only
    if url is not None:
        engine = create_store_engine(url)
        log = DecisionLog(engine, migrate_first=False, buffer=10**6)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    delays: list[float] = []
    v = {**VERDICT}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        finished = loop.create_future()
        i = 0

        def on_datagram() -> None:
            nonlocal i
            while True:
                try:
                    data = sock.recv(64)
                except BlockingIOError:
                    return
                if data == b"end":
                    if not finished.done():
                        finished.set_result(None)
                    return
                delays.append(time.monotonic() - struct.unpack("d", data)[0])
                if log is not None:
                    for _ in range(per_tick):
                        i += 1
                        v["transaction_id"] = f"l{i}"
                        log.record(make_record(v, X[i % 1000], route="/fraud_score", key_name="k",
                                               latency_ms=1.0))

        loop.add_reader(sock.fileno(), on_datagram)
        sender = subprocess.Popen([sys.executable, "-c", SENDER, str(sock.getsockname()[1]), str(seconds)])
        await finished
        sender.wait()

    uvloop.run(main())
    written = 0
    if log is not None:
        written = log.close(timeout=60).written
        engine.dispose()
    batches.BatchWriter.write = real_write
    if feeder is not None:
        feeder.wait(60)
    d = np.array(delays[200:]) * 1e6  # skip the first 0.2 s
    return {"p50": float(np.percentile(d, 50)), "p99": float(np.percentile(d, 99)),
            "p999": float(np.percentile(d, 99.9)), "max": float(d.max()), "written": written}
