"""The bulk lane: large requests take turns with everything else on a worker's event loop.

A worker scores on its event loop, so a large request is cut into pieces (a parse, a chunk of
rows, the answer's encoding), and the loop reads its sockets between two pieces. The lane makes
that hold for every large request in flight together: a piece runs holding the lane and keeps it
until the loop has polled its sockets once more, so at most one piece of bulk work runs between
two polls, and the large requests take their turns in order (an asyncio.Lock is FIFO).

Releasing the lane right after the piece (as before 2026-12-01) did not: the pauses of all the
large requests in flight ended in the same turn of the loop, each found the lane free, and their
pieces ran back to back before the next poll. With 5% of the requests being 1,000-row batches at
20 connections, ~8 were in flight per worker, and a single transaction waited for all of their
pieces: its p99 was 6-7 times its p99 alone (bench/run.py, section mixed).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


async def yield_to_io() -> None:
    """One turn of the event loop, the sockets polled in it.

    A timer due now (not a plain yield) runs after the callbacks of the sockets polled in that
    turn, so single transactions that arrived meanwhile are read, and their tasks queued, before
    the next piece. Due now, not in 0.1 ms as before: epoll rounds any positive wait up to 1 ms,
    which an idle loop then slept (16 ms of nothing in a 1,000-row request)."""
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    loop.call_at(loop.time(), _wake, waiter)
    await waiter


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():  # the request may have been cancelled meanwhile
        waiter.set_result(None)


class BulkLane:
    """``async with lane.piece(): <one piece of bulk work, no await>``. One per event loop."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    @property
    def busy(self) -> bool:
        """Whether a large request holds the lane (a piece runs or just ran)."""
        return self._lock.locked()

    @contextlib.asynccontextmanager
    async def piece(self) -> AsyncIterator[None]:
        async with self._lock:
            yield
            await yield_to_io()  # still holding the lane: the next piece comes after a poll
