"""The timeout middleware that replaces BentoML's: same answers, no timer left behind a request."""

import asyncio

import pytest
from bentoml._internal.server.http import traffic

from fraudscore.ops import bentoml_fixes

ORIGINAL = traffic.TimeoutMiddleware


async def _ok(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _slow(scope, receive, send):
    await asyncio.sleep(1)
    await _ok(scope, receive, send)


async def _call(app) -> list[dict]:
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    await app({"type": "http", "path": "/", "method": "POST", "headers": []}, receive, send)
    return sent


def _pending_timers_after(cls, requests: int) -> int:
    async def run() -> int:
        app = cls(_ok, timeout=10)
        for _ in range(requests):
            assert (await _call(app))[0]["status"] == 200
        loop = asyncio.get_running_loop()
        return sum(1 for h in loop._scheduled if not h.cancelled())

    return asyncio.run(run())


def test_no_timer_outlives_its_request():
    assert _pending_timers_after(ORIGINAL, 50) == 50  # what BentoML 1.4's middleware leaves behind
    assert _pending_timers_after(bentoml_fixes.TimeoutMiddleware, 50) == 0


def test_a_request_past_the_timeout_still_gets_504():
    sent = asyncio.run(_call(bentoml_fixes.TimeoutMiddleware(_slow, timeout=0.05)))
    assert sent[0]["status"] == 504


async def _raises_before_answering(scope, receive, send):
    raise RuntimeError("model exploded")


async def _returns_without_answering(scope, receive, send):
    return None


def test_an_app_error_surfaces_at_once_instead_of_waiting_out_the_timeout():
    async def run():
        app = bentoml_fixes.TimeoutMiddleware(_raises_before_answering, timeout=5)
        started = asyncio.get_running_loop().time()
        with pytest.raises(RuntimeError, match="model exploded"):  # Starlette logs it and answers 500
            await _call(app)
        assert asyncio.get_running_loop().time() - started < 1
        app = bentoml_fixes.TimeoutMiddleware(_returns_without_answering, timeout=5)  # client gone
        assert await asyncio.wait_for(_call(app), 1) == []

    asyncio.run(run())
