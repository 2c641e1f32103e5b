"""A real HTTP receiver on loopback for the alert tests: records every request and can be told
to be down (its socket closed), to answer a status (500, 429 with Retry-After, 400), to answer
slowly, or to hang."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fraudscore.devtools import free_port


@dataclass
class Received:
    at: float  # time.time() when the request was read
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what it was answered

    def json(self):
        return json.loads(self.body)


@dataclass
class Receiver:
    port: int = field(default_factory=free_port)
    # answers, in order, for the next requests ((status, headers) pairs); then `status`
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    status: int = 200
    delay_s: float = 0.0  # before answering
    hang: bool = False  # read the request, never answer (until released or closed)
    requests: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # the header and body writes: no 40 ms stall

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, extra = receiver._answer()
                hang = receiver.hang  # a hung request is recorded with status 0 (never answered)
                receiver._record(Received(time.time(), self.path, dict(self.headers.items()), body,
                                          0 if hang else status))
                if hang:
                    receiver._released.wait(60)
                    return
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        class Server(ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True
            block_on_close = False

        self._server = Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def down(self) -> None:
        """Stop listening: connections are refused until :meth:`up`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def release(self) -> None:
        self.hang = False
        self._released.set()

    def close(self) -> None:
        self.release()
        self.down()

    def _answer(self) -> tuple[int, dict[str, str]]:
        with self._lock:
            return self.script.pop(0) if self.script else (self.status, {})

    def _record(self, item: Received) -> None:
        with self._lock:
            self.requests.append(item)

    def ids(self) -> list[str]:
        """X-Fraud-Alert-Id of every request answered 2xx, in order."""
        with self._lock:
            return [r.headers.get("X-Fraud-Alert-Id", "") for r in self.requests if 200 <= r.status < 300]


def wait_for(predicate, timeout: float, step: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
