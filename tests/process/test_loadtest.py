"""The release gate (`make loadtest`, loadtest/gate.py) passes a healthy service and fails a slow
or failing one: real Locust runs, short, against real servers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from fraudscore.devtools import free_port
from tests.conftest import KEY
from tests.process.conftest import ROOT

pytestmark = pytest.mark.process

SHORT = ["--users", "4", "--spawn-rate", "4", "--duration", "4s"]


def gate(out: Path, *args: str, key: str = KEY) -> subprocess.CompletedProcess:
    env = {**__import__("os").environ, "FRAUD_API_KEY": key}
    return subprocess.run([sys.executable, str(ROOT / "loadtest" / "gate.py"), "--out", str(out), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


class DelayingProxy:
    """A TCP proxy on loopback that holds every chunk the server sends back for ``delay`` s."""

    def __init__(self, upstream_port: int, delay: float) -> None:
        self.port, self.upstream_port, self.delay = free_port(), upstream_port, delay
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        started.wait(10)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        started.set()
        self.loop.run_forever()
        self.server.close()
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.loop.run_until_complete(asyncio.sleep(0.1))
        self.loop.close()

    async def _handle(self, client_r, client_w) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def pipe(reader, writer, delay: float) -> None:
            try:
                while chunk := await reader.read(65536):
                    if delay:
                        await asyncio.sleep(delay)
                    writer.write(chunk)
                    await writer.drain()
            except ConnectionError:
                pass
            finally:
                writer.close()

        await asyncio.gather(pipe(client_r, up_w, 0.0), pipe(up_r, client_w, self.delay))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_gate_passes_a_healthy_service_it_starts_itself(trained, tmp_path):
    done = gate(tmp_path / "pass", *SHORT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "GATE PASSED" in done.stdout
    for route in ("POST /fraud_score", "POST /fraud_score/batch", "POST /v1/fraud-score"):
        assert route in done.stdout  # every weighted task ran and is reported
    assert (tmp_path / "pass" / "report.html").stat().st_size > 0
    assert (tmp_path / "pass" / "stats_stats.csv").exists()


def test_gate_fails_a_slow_service_and_a_failing_one(serve, trained, tmp_path):
    srv = serve(FRAUD_MODEL_TAG=trained.tag)
    proxy = DelayingProxy(srv.port, delay=0.15)
    try:
        slow = gate(tmp_path / "slow", *SHORT, "--p99-ms", "100", "--host", f"http://127.0.0.1:{proxy.port}")
    finally:
        proxy.close()
    assert slow.returncode == 1, slow.stdout + slow.stderr
    assert "p99 > 100 ms" in slow.stdout and "GATE FAILED" in slow.stdout
    assert "FAILURES" not in slow.stdout  # slow, but every answer was right

    failing = gate(tmp_path / "failing", *SHORT, "--host", srv.url, key="not-a-key-0123456789abcdef")
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "FAILURES" in failing.stdout and "GATE FAILED" in failing.stdout
