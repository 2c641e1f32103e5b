"""Helpers behind `make serve`, `make bench` and `make loadtest` (not part of the bento).

    python -m fraudscore.devtools ensure-key     # writes a random key if none is configured
    python -m fraudscore.devtools has-model      # exit 0 if FRAUD_MODEL_TAG resolves in the store

:class:`LocalServer` runs `bentoml serve` with the production configuration.yaml on a free
loopback port, for the benchmark and the load test.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .edge.keys import load_keys
from .settings import ConfigError, NoApiKey, env_file, get_settings

ROOT = Path(__file__).resolve().parents[1]


def ensure_key() -> int:
    """Generate a key only when none is configured anywhere; never replace the user's own."""
    path = env_file()
    if path is None:
        print("error: ensure-key writes into FRAUD_ENV_FILE, which is not set", file=sys.stderr)
        return 1
    if not path.exists():
        _write_private(path, "")
    get_settings.cache_clear()
    try:
        load_keys(get_settings())
        print(f"API key: configured (environment, {path} or FRAUD_API_KEYS_FILE)")
        return 0
    except NoApiKey:
        pass
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("FRAUD_API_KEYS=")]
    lines.append(f"FRAUD_API_KEYS={secrets.token_urlsafe(32)}")
    _write_private(path, "\n".join(lines) + "\n")
    print(
        f"No API key was configured: generated a development key into {path} (git-ignored).\n"
        f"Use it as:  export FRAUD_API_KEY=$(sed -n 's/^FRAUD_API_KEYS=//p' {path} | cut -d, -f1)\n"
        '            curl -H "X-API-Key: $FRAUD_API_KEY" ...'
    )
    return 0


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` through a file that is 0600 from its creation."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def has_model() -> int:
    import bentoml
    from bentoml.exceptions import NotFound

    tag = get_settings().model_tag
    try:
        bentoml.models.get(tag)
    except NotFound:
        print(f"no model {tag} in the store ({os.environ.get('BENTOML_HOME', '~/bentoml')})")
        return 1
    return 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def kill_group(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left of it (workers included)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):  # stragglers, or a main process that ignored TERM
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def ensure_model(env: dict[str, str]) -> None:
    """Train a default model into ``env``'s BENTOML_HOME when it has no ``fraud_detector``."""
    check = subprocess.run([sys.executable, "-m", "fraudscore.devtools", "has-model"],  # noqa: S603
                           cwd=ROOT, env=env, capture_output=True)
    if check.returncode != 0:
        print(f"training a default model into {env.get('BENTOML_HOME', '~/bentoml')} ...", flush=True)
        subprocess.run([sys.executable, "train.py"], cwd=ROOT, env=env, check=True,  # noqa: S603
                       stdout=subprocess.DEVNULL)


class LocalServer:
    """``with LocalServer(env, log) as srv:`` `bentoml serve service:FraudScorer` (BENTOML_CONFIG =
    configuration.yaml unless ``env`` says otherwise) on a free port; ``srv.url`` answers /readyz
    200 inside the block, ``srv.ready_seconds`` says how long that took. The process group is
    torn down on exit."""

    def __init__(self, env: dict[str, str], log: Path, timeout: float = 90.0) -> None:
        self.env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True",
                    "BENTOML_CONFIG": str(ROOT / "configuration.yaml"), **env}
        self.log, self.timeout = log, timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LocalServer:
        cmd = [sys.executable, "-m", "bentoml", "serve", "service:FraudScorer", "--working-dir", str(ROOT),
               "--host", "127.0.0.1", "--port", str(self.port)]
        self._fh = open(self.log, "wb")  # noqa: SIM115 (closed in __exit__)
        started = time.monotonic()
        self.proc = subprocess.Popen(  # noqa: S603 (our own command line)
            cmd, cwd=ROOT, env=self.env, stdout=self._fh, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        while time.monotonic() - started < self.timeout:
            if self.proc.poll() is not None:
                self.__exit__()
                raise RuntimeError(f"`bentoml serve` exited with {self.proc.returncode}; see {self.log}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as r:  # noqa: S310 (loopback)
                    if r.status == 200:
                        self.ready_seconds = time.monotonic() - started
                        return self
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"/readyz not 200 within {self.timeout:.0f} s; see {self.log}")

    def worker_rss_mb(self) -> list[float]:
        """Resident memory of each worker process (the children of `bentoml serve`)."""
        out = []
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        for pid in children.read_text().split() if children.exists() else []:
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{pid}/status").read_text()
                if "_bentoml_impl.worker" in Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " "):
                    out.append(int(status.split("VmRSS:")[1].split()[0]) / 1024)
        return out

    def __exit__(self, *exc: object) -> None:
        kill_group(self.proc)
        self._fh.close()


def main(argv: list[str]) -> int:
    commands = {"ensure-key": ensure_key, "has-model": has_model}
    if len(argv) != 1 or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
