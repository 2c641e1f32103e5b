"""Raw-socket HTTP for the hostile-client tests: what a well-behaved client library never sends."""

from __future__ import annotations

import json
import socket
import time


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def head(path: str, key: str | None = None, *, method: str = "POST", length: int | None = None,
         extra: str = "") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    if key:
        lines.append(f"X-API-Key: {key}")
    if length is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {length}"]
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def read_response(sock: socket.socket, limit: float = 15.0) -> tuple[int, dict[str, str], bytes]:
    """One response: (status, headers, body); (0, {}, b"") if the server closed without one."""
    sock.settimeout(limit)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, {}, b""
        data += chunk
    head_, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head_.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    need = int(headers.get("content-length", "0"))
    while len(body) < need:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Does the server close the connection within ``seconds`` (reading and dropping anything)?"""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True
    return False


def json_body(body: bytes) -> dict:
    return json.loads(body)
