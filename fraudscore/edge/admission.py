"""Overload shedding: an adaptive limit on scoring requests in progress, driven by queueing delay.

A worker's queue is its event loop: a request waits in the kernel until the loop reads it, then
in the loop until the edge starts on it. The second part (the *sojourn*) is measured for every
scoring request; the first is about the loop's lag, which a timer ticking every TICK_S measures
(how late it fires). Their sum is the request's wait, and the worker keeps at most ``limit``
scoring requests in progress:

- a new scoring request beyond the limit is answered 503 (Retry-After: 1) the moment its headers
  are parsed, by the protocol, before any ASGI work is spent on it;
- every interval (FRAUD_OVERLOAD_INTERVAL_MS) the limit moves: when the shortest wait of the
  interval was above the target (FRAUD_OVERLOAD_TARGET_MS), the queue stood for the whole
  interval, and the limit shrinks by a tenth; otherwise it grows back by a few requests. It never
  goes below MIN_LIMIT, so a worker under attack still serves at close to its capacity instead of
  spending itself on refusals, and never above MAX_LIMIT;
- a request let in that still waited more than LATE_FACTOR targets is answered 503 by the edge:
  it is too late to be useful to anyone.

A fixed count of requests in flight cannot tell fast requests from slow ones, or a burst that will
drain from a standing queue; the wait can (the idea of CoDel, and of Netflix's adaptive
concurrency limits). An interval with fewer than MIN_SAMPLES requests is no evidence either way.
"""

from __future__ import annotations

import asyncio
import math
import time

from ..ops import metrics

MIN_SAMPLES = 8
MIN_LIMIT, MAX_LIMIT = 32, 512  # scoring requests in progress per worker
GROWTH = 4  # requests added to the limit per interval without a standing queue
LATE_FACTOR = 4
TICK_S = 0.01


class Admission:
    def __init__(self, target_ms: float, interval_ms: float) -> None:
        self.target = target_ms / 1000.0
        self.interval = interval_ms / 1000.0
        self.limit = float(MAX_LIMIT)
        self.in_progress = 0
        self._interval_end = 0.0
        self._min_sojourn = math.inf
        self._samples = 0
        self.lag = 0.0
        self._ticking: asyncio.AbstractEventLoop | None = None
        self._tick_due = 0.0

    def _start_ticking(self) -> None:
        try:
            self._ticking = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a unit test): the lag stays 0
            return
        self._tick_due = time.monotonic()
        self._tick()

    def _tick(self) -> None:
        now = time.monotonic()
        self.lag = max(0.0, now - self._tick_due)
        self._tick_due = now + TICK_S
        self._ticking.call_later(TICK_S, self._tick)

    @property
    def overloaded(self) -> bool:
        return self.limit < MAX_LIMIT

    def arrival(self) -> bool:
        """Let a new scoring request in? Asked at its headers, before any work is spent on it.
        Only requests whose body has arrived count as in progress (:meth:`received`, then
        :meth:`done` when answered): an upload that stalls holds no place."""
        return self.in_progress < self.limit

    def received(self) -> None:
        """A request let in has its whole body: it is in progress until :meth:`done`."""
        self.in_progress += 1

    def done(self) -> None:
        self.in_progress -= 1

    def admit(self, sojourn: float, now: float) -> bool:
        """Serve a request that was let in and waited ``sojourn`` seconds? ``now``: monotonic."""
        if self._ticking is None:  # the first request in this worker's event loop
            self._start_ticking()
        if now >= self._interval_end:
            self._end_interval(now)
        wait = sojourn + self.lag
        self._samples += 1
        if wait < self._min_sojourn:
            self._min_sojourn = wait
        return wait <= LATE_FACTOR * self.target

    def _end_interval(self, now: float) -> None:
        # the samples are of the interval that just ended; after a quiet gap they are stale
        recent = now < self._interval_end + self.interval
        if recent and self._samples >= MIN_SAMPLES and self._min_sojourn > self.target:
            self.limit = max(MIN_LIMIT, min(self.limit, self.in_progress) * 0.9)
        else:
            self.limit = min(MAX_LIMIT, self.limit + GROWTH) if recent else float(MAX_LIMIT)
        metrics.OVERLOADED.set(1 if self.overloaded else 0)
        self._min_sojourn = math.inf
        self._samples = 0
        self._interval_end = now + self.interval


_controller: Admission | None = None


def controller(target_ms: float, interval_ms: float) -> Admission:
    """The worker's one controller, shared by the protocol (arrivals) and the edge (sojourns)."""
    global _controller
    wanted = (target_ms / 1000.0, interval_ms / 1000.0)
    if _controller is None or (_controller.target, _controller.interval) != wanted:
        _controller = Admission(target_ms, interval_ms)
    return _controller
