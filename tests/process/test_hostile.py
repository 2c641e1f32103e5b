"""Hostile clients against a real `bentoml serve`: the findings of the outside probe, each a test.

One server (2 workers, 2 s header and body deadlines, 3 s keep-alive) serves the class. Traffic is
loopback only, bounded in count and time.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import pytest

from fraudscore.edge.routes import ROUTES
from tests.conftest import KEY, tx_body
from tests.process import rawhttp
from tests.process.conftest import start_server

pytestmark = pytest.mark.process
H = {"X-API-Key": KEY}
DEADLINE_S = 2


@pytest.fixture(scope="class")
def server(trained, tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("hostile") / "server.log", workers=2,
                       args=("--timeout-keep-alive", "3"), FRAUD_MODEL_TAG=trained.tag,
                       FRAUD_HEADER_TIMEOUT_S=str(DEADLINE_S), FRAUD_BODY_TIMEOUT_S=str(DEADLINE_S),
                       FRAUD_RATE_LIMIT="off")  # the overload test sends more than a key may
    yield srv
    srv.stop()


@pytest.fixture(scope="class")
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def _route_labels(metrics_text: str) -> set[str]:
    return set(re.findall(r'fraud_http_requests_total\{[^}]*route="([^"]*)"', metrics_text))


def _worker_rss_mb(server) -> list[float]:
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    out = []
    for pid in children:
        cmd = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
        if "_bentoml_impl.worker" in cmd:
            out.append(int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024)
    return out


class TestHostileClients:
    def test_junk_paths_create_no_metric_series_whoever_sends_them(self, http):
        before = http.get("/metrics").text
        for i in range(400):
            headers = H if i % 2 else {}  # half without a key (403), half with one (404)
            r = http.get(f"/x{secrets.token_hex(8)}", headers=headers)
            assert r.status_code == (404 if i % 2 else 403)
        after = http.get("/metrics").text
        assert _route_labels(after) <= {r.path for r in ROUTES} | {"other"}
        assert "/x" not in after
        assert len(after) - len(before) < 4_000, "series grew with the junk paths"

    def test_stalled_uploads_hold_no_slot_and_get_408(self, server, http, stand_in):
        stalled = []
        for _ in range(1_100):  # more than the in-progress limit of both workers (2 x 512)
            sock = rawhttp.connect(server.port)
            sock.sendall(rawhttp.head("/fraud_score", KEY, length=10_000))
            stalled.append(sock)
        try:
            for i in range(30):  # normal callers are served meanwhile
                r = http.post("/fraud_score", json=tx_body(stand_in, i), headers=H)
                assert r.status_code == 200, r.text
            statuses = [rawhttp.read_response(s, DEADLINE_S + 5)[0] for s in stalled]
            assert statuses == [408] * len(stalled)
            assert all(rawhttp.closed_within(s, 3) for s in stalled)
        finally:
            for sock in stalled:
                sock.close()

    def test_a_body_that_stops_midway_gets_408_and_a_client_that_leaves_changes_nothing(
            self, server, http, stand_in):
        body = json.dumps(tx_body(stand_in, 0)).encode()
        sock = rawhttp.connect(server.port)
        sock.sendall(rawhttp.head("/fraud_score", KEY, length=len(body)) + body[:100])
        started = time.monotonic()
        status, _, answer = rawhttp.read_response(sock, DEADLINE_S + 5)
        assert status == 408 and "not complete" in json.loads(answer)["error"]
        assert DEADLINE_S - 0.5 < time.monotonic() - started < DEADLINE_S + 3
        sock.close()
        gone = rawhttp.connect(server.port)  # a client that leaves mid-body
        gone.sendall(rawhttp.head("/fraud_score", KEY, length=len(body)) + body[:100])
        gone.close()
        assert http.post("/fraud_score", json=tx_body(stand_in, 0), headers=H).status_code == 200

    def test_header_size_and_count_are_bounded_with_431(self, server):
        for extra in ("X-Big: " + "a" * 100_000 + "\r\n",
                      "".join(f"X-H{i}: v\r\n" for i in range(200))):
            sock = rawhttp.connect(server.port)
            # the server may have answered and half-closed while we still sent
            with contextlib.suppress(ConnectionError):
                sock.sendall(rawhttp.head("/readyz", method="GET", extra=extra))
            status, headers, body = rawhttp.read_response(sock, 5)
            assert status == 431, (status, body)
            assert headers["x-request-id"] and b"\": " not in body  # traceable, compact JSON
            assert rawhttp.closed_within(sock, 5)
            sock.close()

    def test_unfinished_huge_headers_cost_no_memory(self, server):
        rss_before = sum(_worker_rss_mb(server))
        chunk = b"X-Junk-" + b"b" * 65_536

        def flood() -> None:
            with rawhttp.connect(server.port) as sock:
                sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
                try:
                    for _ in range(50 * 1024 * 1024 // len(chunk)):  # up to 50 MB, never finished
                        sock.sendall(chunk)
                except (ConnectionError, TimeoutError):
                    pass

        threads = [threading.Thread(target=flood) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sum(_worker_rss_mb(server)) - rss_before < 40

    def test_slowloris_and_silent_connections_are_closed(self, server):
        slow = [rawhttp.connect(server.port) for _ in range(50)]
        idle = [rawhttp.connect(server.port) for _ in range(50)]
        for sock in slow:
            sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
        deadline = time.monotonic() + DEADLINE_S + 4
        while time.monotonic() < deadline:  # one more header byte now and then: never finished
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.sendall(b"X")
            time.sleep(0.5)
        assert all(rawhttp.closed_within(s, 2) for s in slow)
        assert all(rawhttp.closed_within(s, 5) for s in idle)  # keep-alive timeout: 3 s
        for sock in slow + idle:
            sock.close()

    def test_every_client_can_read_a_413(self, server):
        big = b"x" * (5 * 1024 * 1024)
        for _ in range(5):  # urllib writes the whole body before it reads
            req = urllib.request.Request(f"{server.url}/fraud_score", data=big, method="POST",  # noqa: S310
                                         headers={**H, "Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=30)  # noqa: S310 (loopback)
            assert err.value.code == 413 and "larger than" in json.loads(err.value.read())["error"]
        sock = rawhttp.connect(server.port)  # a client that waits for 100 Continue sends nothing
        sock.sendall(rawhttp.head("/fraud_score", KEY, length=10**9, extra="Expect: 100-continue\r\n"))
        assert rawhttp.read_response(sock, 5)[0] == 413
        sock.close()

    def test_malformed_requests_are_400_and_one_log_line(self, server):
        for garbage in (b"GARBAGE\r\n\r\n", b"POST /fraud_score HTTP/1.1\r\nContent-Length: abc\r\n\r\n"):
            sock = rawhttp.connect(server.port)
            sock.sendall(garbage)
            assert rawhttp.read_response(sock, 5)[0] == 400
            sock.close()
        time.sleep(0.5)
        lines = [ln for ln in server.logs().splitlines() if "invalid HTTP request" in ln]
        assert 1 <= len(lines) <= 2, lines  # one line per worker at most, never one per copy

    def test_request_ids_are_echoed_or_generated(self, http):
        assert http.get("/readyz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
        generated = {http.get("/livez").headers["x-request-id"] for _ in range(5)}
        assert len(generated) == 5
        bad = http.get("/livez", headers={"X-Request-ID": "x" * 500}).headers["x-request-id"]
        assert bad != "x" * 500

    def test_trailing_slashes_and_unknown_paths_are_404_never_redirects(self, http):
        for path in ("/fraud_score/", "/model_info/", "//fraud_score", "/fraud_score/batch/x"):
            r = http.post(path, json={}, headers={**H, "Host": "evil.example"})
            assert r.status_code in (404, 405) and "location" not in r.headers, (path, r.status_code)

    def test_overload_sheds_fast_and_answers_everyone(self, server, stand_in):
        body = json.dumps(tx_body(stand_in, 0)).encode()
        request = rawhttp.head("/fraud_score", KEY, length=len(body)) + body
        results: list[tuple[int, float]] = []
        lock = threading.Lock()

        def client() -> None:
            with rawhttp.connect(server.port, timeout=10) as sock:
                end = time.monotonic() + 3
                while time.monotonic() < end:
                    started = time.monotonic()
                    sock.sendall(request)
                    status, headers, _ = rawhttp.read_response(sock, 10)
                    with lock:
                        results.append((status, time.monotonic() - started))
                    if status == 503:
                        assert headers.get("retry-after") == "1"

        threads = [threading.Thread(target=client) for _ in range(300)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        statuses = {s for s, _ in results}
        assert statuses <= {200, 503} and 200 in statuses, statuses  # everyone answered
        assert max(t for _, t in results) < 5  # no client waited anywhere near a timeout
