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
one (a client that went away).
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
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message) -> None:
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        fut = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
        try:
            await asyncio.wait((waiter, fut), return_when=asyncio.FIRST_COMPLETED)
            timed_out = waiter.done() and waiter.exception() is not None
            if timed_out and fut.cancel():
                body = {"error": f"Not able to process the request in {self.timeout} seconds"}
                await JSONResponse(body, status_code=504)(scope, receive, send)
            else:
                await fut  # the answer is on its way, or the app ended: its error propagates
        except asyncio.CancelledError:
            fut.cancel()
            raise
        finally:
            timer.cancel()


def install() -> None:
    # base_app.middlewares imports the class from this module each time it builds an app
    traffic.TimeoutMiddleware = TimeoutMiddleware
