"""Adaptive batching of model calls inside a worker: concurrent small calls become one model call.

A call hands its feature rows to :class:`ModelBatcher` and waits. The first waiting call
schedules one run of the model at the end of the event loop's current turn; every call that
arrives before that run (the other requests read in the same turn) joins it. The run scores the
rows of up to ``FRAUD_BATCH_MAX_ITEMS`` waiting calls in ONE model call and hands each its slice.
No timer and no fixed window: an idle service answers as fast as without batching, and a busy
one merges exactly what has queued while it was busy. (It replaces BentoML's private
CorkDispatcher, which an upgrade could change under us; measured side by side in the README.)
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import numpy as np

# Only calls of fewer rows are merged: bigger ones gain nothing from company (make bench,
# 1,000-row requests: -15% throughput merged, and merged queues of them held 450-520 MB per
# worker), while single transactions gain +10% (ONNX) to +115% (scikit-learn) at 20 connections.
MERGE_BELOW_ROWS = 100


class ModelBatcher:
    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], max_rows: int) -> None:
        self._predict = predict
        self._max_rows = max_rows
        self._waiting: deque[tuple[np.ndarray, asyncio.Future]] = deque()
        self._scheduled = False

    async def __call__(self, X: np.ndarray) -> np.ndarray:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append((X, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._run)
        return await future

    def _run(self) -> None:
        self._scheduled = False
        batch, rows = [], 0
        while self._waiting and (not batch or rows + len(self._waiting[0][0]) <= self._max_rows):
            X, future = self._waiting.popleft()
            if not future.done():  # a cancelled caller (timeout, client gone) is skipped
                batch.append((X, future))
                rows += len(X)
        if self._waiting:  # the rest: the next turn, so other work is not held up by a long queue
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._run)
        if not batch:
            return
        try:
            X = batch[0][0] if len(batch) == 1 else np.concatenate([x for x, _ in batch])
            proba = self._predict(X)
        except Exception as exc:  # every caller of this run learns it
            for _, future in batch:
                future.set_exception(exc)
            return
        start = 0
        for x, future in batch:
            future.set_result(proba[start:start + len(x)])
            start += len(x)

    def close(self) -> None:
        """Cancel the calls still waiting (shutdown)."""
        waiting, self._waiting = self._waiting, deque()
        for _, future in waiting:
            future.cancel()
