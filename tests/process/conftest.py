"""Real `bentoml serve` processes on free loopback ports, torn down with their whole process group.

`start_server` runs the command users run (`bentoml serve service:FraudScorer` with
configuration.yaml), captures its stdout+stderr in a file and waits, bounded, for /readyz.
Only one server should run at a time: each `bentoml serve` empties the Prometheus directory under
the shared BENTOML_HOME when it starts, which would wipe the metrics of a server already running.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import pytest

from fraudscore.devtools import free_port, kill_group

ROOT = Path(__file__).resolve().parents[2]
BENTOML = str(ROOT / ".venv" / "bin" / "bentoml")
READY_TIMEOUT = 90.0  # a loaded 2-core machine took 40 s to start two workers
HOST = "127.0.0.1"


def serve_command(port: int, *extra: str) -> list[str]:
    return [BENTOML, "serve", "service:FraudScorer", "--working-dir", str(ROOT),
            "--host", HOST, "--port", str(port), *extra]


def server_env(drop: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    env = {**os.environ, "BENTOML_CONFIG": str(ROOT / "configuration.yaml"), **extra}
    for name in drop:
        env.pop(name, None)
    return env


@dataclass
class Server:
    url: str
    port: int
    proc: subprocess.Popen
    log: Path
    _fh: IO[bytes] = field(repr=False)

    def logs(self) -> str:
        self._fh.flush()
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        kill_group(self.proc)
        self._fh.close()


def start_server(log: Path, *, expect_ready: bool = True, workers: int = 0, args: tuple[str, ...] = (),
                 **env_extra: str) -> Server:
    """Start `bentoml serve` and wait (bounded) for /readyz.

    ``expect_ready=True`` waits for 200; ``False`` returns as soon as /readyz answers at all (a
    server that is up but has no model answers 503). /readyz is answered by whichever worker takes
    the connection, so ``workers=N`` also waits until N workers have logged their start.
    Fails with the server's log otherwise.
    """
    port = free_port()
    fh = open(log, "wb")  # noqa: SIM115 (open for the child's lifetime; closed by stop())
    proc = subprocess.Popen(serve_command(port, *args), cwd=ROOT, env=server_env(**env_extra),
                            stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    server = Server(f"http://{HOST}:{port}", port, proc, log, fh)
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(
                    f"`bentoml serve` exited with {proc.returncode} before it was ready:\n"
                    f"{server.logs()[-4000:]}")
            try:
                r = httpx.get(f"{server.url}/readyz", timeout=2)
            except httpx.HTTPError as exc:
                last = repr(exc)
            else:
                last = f"HTTP {r.status_code}"
                started = server.logs().count("Service FraudScorer initialized")
                if (r.status_code == 200 or not expect_ready) and started >= workers:
                    return server
            time.sleep(0.2)
        raise AssertionError(f"/readyz not {'200' if expect_ready else 'answering'} within "
                             f"{READY_TIMEOUT:.0f} s (last: {last}):\n{server.logs()[-4000:]}")
    except BaseException:
        server.stop()
        raise


@pytest.fixture
def serve(tmp_path):
    """Start servers for one test; every one is torn down afterwards, even when the test fails."""
    started: list[Server] = []

    def _start(name: str = "server", **kwargs) -> Server:
        srv = start_server(tmp_path / f"{name}.log", **kwargs)
        started.append(srv)
        return srv

    yield _start
    for srv in started:
        srv.stop()
