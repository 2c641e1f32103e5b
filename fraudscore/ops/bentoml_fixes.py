"""Fixes to BentoML 1.4 internals that cost this service latency, applied when service.py loads.

BentoML's ``TimeoutMiddleware`` (``traffic.timeout``) schedules a timer per request with
``loop.call_later`` and never cancels it. Each pending timer keeps the request's future and a copy
of its context (with the OpenTelemetry span and everything the span holds) alive for the whole
timeout, so at 1,000 requests/s with a 10 s timeout a worker carries some 300,000 extra objects,
and every full garbage collection walks them: 100-200 ms pauses every second or two, which were
the whole p99 of this service. The replacement keeps BentoML's behaviour (504 when no response has
started within the timeout) and cancels its timer when the request ends. It also stops waiting
when the request ends without answering: BentoML's waits out the whole timeout when the app raises
before its first send (then uvicorn answers 500 and the error is never logged) or returns without
one (a client that went away). And it runs the app in the request's own task, not a second one
(one turn of the event loop less per request; under overload a turn is long).

It also chooses the workers' event loop (``use_event_loop``).
"""

from __future__ import annotations

import asyncio

from bentoml._internal.server.http import traffic
from starlette.responses import JSONResponse


class TimeoutMiddleware(traffic.TimeoutMiddleware):
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = False

        async def _send(message) -> None:
            nonlocal started
            started = True
            await send(message)

        # The app runs in this task (BentoML's runs it in a second task: one more turn of the event
        # loop per request, which under overload is a long one); the deadline is cancelled on exit.
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                await self.app(scope, receive, _send)
        except TimeoutError:
            if not deadline.expired() or started:
                raise  # the app's own TimeoutError, or an answer cut off: nothing else to send
            body = {"error": f"Not able to process the request in {self.timeout} seconds"}
            await JSONResponse(body, status_code=504)(scope, receive, send)


def install(event_loop: str = "asyncio") -> None:
    # base_app.middlewares imports the class from this module each time it builds an app
    traffic.TimeoutMiddleware = TimeoutMiddleware
    use_event_loop(event_loop)


def use_event_loop(kind: str) -> None:
    """The event loop of BentoML's workers: "asyncio" or "uvloop" (FRAUD_EVENT_LOOP).

    BentoML's worker leaves uvicorn's loop at "auto", which takes uvloop when it is installed.
    uvloop (libuv >= 1.45) accepts ONE connection per turn of the loop, and under load a turn
    takes 50-200 ms: at 1,000 connections ~500 of them waited in the kernel's accept queue,
    accepted at ~12 a second per worker, and wrk's clients timed out after 5 s although their
    requests had been sent (libuv/libuv#3696; README, "Hardening"). asyncio's selector loop
    accepts every waiting connection at once, and on this service it was also faster at 20
    connections (bench figures in the README). uvicorn reads the table when the worker's server
    starts, after service.py (which calls this) is imported; tests/process/test_worker.py checks
    the loop a real worker runs, so an upgrade that ignores this fails loudly."""
    import uvicorn.config

    factories = uvicorn.config.LOOP_FACTORIES
    factories["auto"] = factories[kind]
