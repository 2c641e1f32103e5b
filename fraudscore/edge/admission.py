"""Overload shedding on queueing delay (CoDel, as Facebook runs it in front of its RPC queues).

A worker's queue is its event loop: a request whose body has arrived waits there until the loop
gets to it. That wait (the *sojourn*) is measured for every scoring request when its handling
starts. While it stays below the target (FRAUD_OVERLOAD_TARGET_MS, 5 ms) in some moment of every
interval (FRAUD_OVERLOAD_INTERVAL_MS, 100 ms), the queue drains and every request is served.
When a whole interval passes without the wait ever dropping below the target, the queue is
standing: from then on a request that waited more than the target is answered 503 at once (a
few microseconds instead of a scoring), so the queue drains and the requests that are served are
served fast. A count of requests in flight cannot tell a burst that will drain from a standing
queue; the wait can. An interval with fewer than MIN_SAMPLES requests never counts as standing:
at a few requests a second, one slow start (a worker's first request, a garbage collection) is
not a queue.
"""

from __future__ import annotations

import math

from ..ops import metrics

MIN_SAMPLES = 8


class Admission:
    def __init__(self, target_ms: float, interval_ms: float) -> None:
        self.target = target_ms / 1000.0
        self.interval = interval_ms / 1000.0
        self.overloaded = False
        self._interval_end = 0.0
        self._min_sojourn = math.inf
        self._samples = 0
        self._gauge = metrics.OVERLOADED

    def admit(self, sojourn: float, now: float) -> bool:
        """Serve a request that waited ``sojourn`` seconds? ``now``: a monotonic clock."""
        if now >= self._interval_end:
            # samples of the interval that just ended; after a quiet gap they are stale
            recent = now < self._interval_end + self.interval
            overloaded = recent and self._samples >= MIN_SAMPLES and self._min_sojourn > self.target
            if overloaded != self.overloaded:
                self.overloaded = overloaded
                self._gauge.set(1 if overloaded else 0)
            self._min_sojourn = math.inf
            self._samples = 0
            self._interval_end = now + self.interval
        self._samples += 1
        if sojourn < self._min_sojourn:
            self._min_sojourn = sojourn
        return not (self.overloaded and sojourn > self.target)
