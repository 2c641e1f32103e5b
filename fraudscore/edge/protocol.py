"""The HTTP/1.1 protocol of a worker: uvicorn's httptools protocol with the limits it lacks.

uvicorn (which BentoML runs) puts no bound on header size or count and no deadline on a request
that never finishes, and it closes a connection right after an early answer, so the kernel resets
it while the client is still sending and the client never reads the answer. This subclass adds:

- request line + headers above FRAUD_MAX_HEADER_BYTES, or more than FRAUD_MAX_HEADERS lines: 431;
- headers not complete FRAUD_HEADER_TIMEOUT_S after the request's first byte, or a body not
  complete FRAUD_BODY_TIMEOUT_S after its headers: 408 (a slow client holds no worker for long);
- a connection that sends nothing is closed after the keep-alive timeout, like an idle one;
- lingering close: whenever the connection is closed after an answer while the client may still
  be sending (413, 408, 431, 400), the answer is followed by a half-close and what still arrives is
  read and dropped for up to LINGER_S or LINGER_BYTES, so the client sees the answer;
- overload shedding at arrival: while the worker is overloaded (admission.py), a scoring request
  that is not let in is answered 503 as soon as its headers are parsed, before any ASGI work;
- the moment a request's body is complete, from which the edge measures how long it waited.

``install()`` makes it the protocol of every uvicorn server started afterwards in the process (a
BentoML worker builds its server after loading service.py) and tells uvicorn which proxies'
X-Forwarded-For to believe (FRAUD_TRUSTED_PROXIES; uvicorn's own default trusts loopback).
"""

from __future__ import annotations

import json
import logging
import os
import time

import httptools
import uvicorn.config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from ..ops import metrics
from ..ops.logs import Throttled
from ..settings import Settings
from .admission import Admission, controller
from .asgi import request_id
from .routes import match

LINGER_S = 2.0
LINGER_BYTES = 16 * 1024 * 1024
ARRIVED = "fraudscore.arrived"  # scope key: monotonic time the request's body was complete
ANSWERED = "fraudscore.status"  # scope key: a status this protocol sent instead of the app
ADMITTED = "fraudscore.admitted"  # scope key: the admission controller counting the request
LET_IN = "fraudscore.let_in"  # scope key: let in at its headers, counted once its body is complete

log = logging.getLogger("bentoml.fraudscore")
_bad_requests = Throttled(log, logging.INFO, 10.0)  # one line per kind and interval: floods are cheap
_late_requests = Throttled(log, logging.INFO, 10.0)


class _HeaderLimit(Exception):
    """Raised in a parser callback: the request's head is over a limit (the message says which)."""


class _CycleTransport:
    """What a request's cycle writes through: closing it lingers while the request is unread."""

    __slots__ = ("_protocol", "_transport")

    def __init__(self, transport, protocol: HardenedProtocol) -> None:
        self._transport, self._protocol = transport, protocol

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing() or self._protocol._lingering

    def close(self) -> None:
        self._protocol._close_after_answer()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


_SHED_BODY = b'{"error":"overloaded: the request was shed, retry shortly"}'
_SHED_HEAD = b"".join((STATUS_LINE[503], b"content-type: application/json\r\ncontent-length: ",
                       str(len(_SHED_BODY)).encode(), b"\r\nretry-after: 1\r\n"))


class HardenedProtocol(HttpToolsProtocol):
    max_header_bytes = 32_768
    max_headers = 100
    header_timeout = 10.0
    body_timeout = 10.0
    admission: Admission | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._header_count = 0
        self._head_size = 0  # request line and headers, as parsed
        self._in_head = False  # between a request's first byte and the end of its headers
        self._in_message = False  # between a request's first byte and the end of its body
        self._deadline: object = None
        self._lingering = False
        self._dropped = 0

    # --- connection ---------------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        # uvicorn arms its keep-alive timer only after an answer: a silent connection stayed open
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                            self.timeout_keep_alive_handler)

    def connection_lost(self, exc) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES:
                self.transport.close()
            return
        self._unset_keepalive_if_required()
        if not self._in_message:  # the first bytes of a request: its headers' clock starts
            self._in_message = self._in_head = True
            self._head_bytes = self._header_count = self._head_size = 0
            self._arm(self.header_timeout, "header")
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "upgrades are not supported", "bad_request")
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeaderLimit):
                self._refuse(431, str(exc.__context__), "headers_too_large")
            else:
                _bad_requests.emit("invalid HTTP request from %s", self._peer())
                self._refuse(400, "invalid HTTP request", "bad_request")
            return
        if self._in_head and self._head_bytes > self.max_header_bytes:  # still unfinished
            self._refuse(431, self._too_large(), "headers_too_large")

    # --- parser callbacks -----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # a pipelined request, begun in the same bytes as the one before
            self._in_head = True
            self._head_bytes = self._header_count = self._head_size = 0
            self._arm(self.header_timeout, "header")
        self._in_message = True

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        if self._head_size > self.max_header_bytes:
            raise _HeaderLimit(self._too_large())
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._head_size += len(name) + len(value) + 4
        if self._header_count > self.max_headers:
            raise _HeaderLimit(f"more than {self.max_headers} header lines")
        if self._head_size > self.max_header_bytes:
            raise _HeaderLimit(self._too_large())
        super().on_header(name, value)

    def _too_large(self) -> str:
        return f"request line and headers larger than {self.max_header_bytes} bytes"

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._arm(self.body_timeout, "body")
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.scope is self.scope:
            self.cycle.transport = _CycleTransport(self.transport, self)

    def on_message_complete(self) -> None:
        self._in_message = False
        self._cancel_deadline()
        self.scope[ARRIVED] = time.monotonic()
        self._count_in(self.scope)
        super().on_message_complete()

    @staticmethod
    def _count_in(scope) -> None:
        """A request let in counts as in progress from its complete body on (a stalled upload
        holds no place); the edge calls ``done()`` on ADMITTED when it has answered."""
        admission = scope.pop(LET_IN, None)
        if admission is not None:
            admission.received()
            scope[ADMITTED] = admission

    def _start_asgi_task(self, cycle, app) -> None:
        route = match(cycle.scope["path"])[0]
        if route is not None and route.hot and self.admission is not None:
            if not self.admission.arrival():
                self._shed(cycle, route.path)
                return
            cycle.scope[LET_IN] = self.admission
            if ARRIVED in cycle.scope:  # a pipelined request whose body came before its turn
                self._count_in(cycle.scope)
        super()._start_asgi_task(cycle, app)

    def _shed(self, cycle, label: str) -> None:
        """Answer 503 now, without starting the app; the parser drops the rest of the body."""
        cycle.response_started = cycle.response_complete = True
        keep = b"" if cycle.keep_alive else b"connection: close\r\n"
        self.transport.write(b"".join((_SHED_HEAD, b"x-request-id: ", request_id(cycle.scope), b"\r\n",
                                       keep, b"\r\n", _SHED_BODY)))
        metrics.REJECTED.labels(reason="overloaded").inc()
        metrics.HTTP_REQUESTS.labels(route=label, method=cycle.scope["method"], status="503").inc()
        if not cycle.keep_alive:
            self._close_after_answer()
            return
        self.on_response_complete()

    def on_response_complete(self) -> None:
        if self._lingering:  # no keep-alive and no pipelined request after a closing answer
            self.server_state.total_requests += 1
            return
        super().on_response_complete()

    # --- deadlines and closing ------------------------------------------------------------------
    def _arm(self, seconds: float, phase: str) -> None:
        self._cancel_deadline()
        self._deadline = self.loop.call_later(seconds, self._timed_out, phase)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self, phase: str) -> None:
        self._deadline = None
        seconds = self.header_timeout if phase == "header" else self.body_timeout
        _late_requests.emit("%s of a request from %s not complete within %.0f s",
                            phase, self._peer(), seconds)
        cycle = self.cycle
        if phase == "header" and cycle is not None and not cycle.response_complete:
            self.transport.close()  # an answer is still being written: no second one into it
            return
        if phase == "body" and cycle is not None and cycle.response_started:
            self.transport.close()  # answered already (the app, or a shed): only the connection goes
            return
        if phase == "body" and cycle is not None:
            cycle.scope[ANSWERED] = 408
            cycle.disconnected = True  # the app's receive() says the client went away
            cycle.message_event.set()
            metrics.REJECTED.labels(reason=f"{phase}_timeout").inc()
            self._write_error(408, f"request {phase} not complete within {seconds:g} s", cycle.scope)
            self._linger()
            return
        self._refuse(408, f"request {phase} not complete within {seconds:g} s", f"{phase}_timeout")

    def _refuse(self, status: int, message: str, reason: str) -> None:
        """Answer a request the app never saw, and close lingeringly."""
        if self.transport.is_closing() or self._lingering:
            return
        metrics.REJECTED.labels(reason=reason).inc()
        metrics.HTTP_REQUESTS.labels(route="other", method="other", status=str(status)).inc()
        self._write_error(status, message)
        self._linger()

    def _write_error(self, status: int, message: str, scope=None) -> None:
        scope = scope if scope is not None else getattr(self, "scope", None)
        headers = scope.get("headers", []) if isinstance(scope, dict) else []
        body = json.dumps({"error": message}, separators=(",", ":")).encode()  # compact, as the app's
        self.transport.write(b"".join((
            STATUS_LINE[status], b"content-type: application/json\r\ncontent-length: ",
            str(len(body)).encode(), b"\r\nx-request-id: ", request_id({"headers": headers}),
            b"\r\nconnection: close\r\n\r\n", body)))

    def _close_after_answer(self) -> None:
        if self._in_message:  # the client may still be sending this request
            self._linger()
        else:
            self.transport.close()

    def _linger(self) -> None:
        if self._lingering:
            return
        self._lingering = True
        self._cancel_deadline()
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        try:
            self.transport.write_eof()  # our side is done: the client sees the end of the answer
        except (NotImplementedError, OSError, RuntimeError):
            self.transport.close()
            return
        self._deadline = self.loop.call_later(LINGER_S, self.transport.close)

    def _peer(self) -> str:
        return self.client[0] if self.client else "unknown"


def install(settings: Settings) -> None:
    """Use :class:`HardenedProtocol`, with these settings, for every uvicorn server started later."""
    HardenedProtocol.max_header_bytes = settings.max_header_bytes
    HardenedProtocol.max_headers = settings.max_headers
    HardenedProtocol.header_timeout = settings.header_timeout_s
    HardenedProtocol.body_timeout = settings.body_timeout_s
    HardenedProtocol.admission = controller(settings.overload_target_ms, settings.overload_interval_ms)
    uvicorn.config.HTTP_PROTOCOLS["auto"] = f"{__name__}:HardenedProtocol"
    os.environ["FORWARDED_ALLOW_IPS"] = ",".join(settings.trusted_proxies)
