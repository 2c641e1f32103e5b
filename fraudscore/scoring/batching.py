"""Adaptive batching of model calls inside a worker, with BentoML's own dispatcher.

Concurrent requests hand their feature rows to :class:`ModelBatcher`; BentoML's ``CorkDispatcher``
(the algorithm behind ``@bentoml.api(batchable=True)``) decides, from the call costs it measures,
how long to hold them, then runs ONE model call over the rows of several requests (at most
``FRAUD_BATCH_MAX_ITEMS``) and hands each request its own slice. The pipeline (scoring.py) sends
it calls of fewer than ``MERGE_BELOW_ROWS`` rows from every scoring route; bigger ones go straight
to the model. Used in-process, it needs no internal HTTP hop, which a single-object endpoint would
need to reach a batchable one (BentoML issue #5540).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import numpy as np
from bentoml._internal.marshal.dispatcher import CorkDispatcher

# Only calls of fewer rows are merged: bigger ones gain nothing from company (make bench, 1,000-row
# requests: -15% throughput merged, with either engine, and merged queues of them held 450-520 MB
# per worker), while single transactions gain +10% (ONNX) to +115% (scikit-learn) at 20 connections.
MERGE_BELOW_ROWS = 100

# CorkDispatcher's max latency is a shedding threshold, not a wait window: past it, queued calls are
# cancelled. It is set far above traffic.timeout (configuration.yaml) so the dispatcher never sheds
# before BentoML's timeout answers 504.
MAX_LATENCY_MS = 30_000


class Overloaded(RuntimeError):
    """The dispatcher dropped the call (its queue could not be served in time)."""


class ModelBatcher:
    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], max_rows: int) -> None:
        self._predict = predict
        self._max_rows = max_rows
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatcher: CorkDispatcher | None = None

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        # A CorkDispatcher belongs to the event loop it first runs on (its queue, condition and
        # controller task): one per loop (a worker has one; tests and in-process callers may not).
        self.close()
        self._dispatcher = CorkDispatcher(
            max_latency_in_ms=MAX_LATENCY_MS, max_batch_size=self._max_rows,
            fallback=lambda: None, get_batch_size=len, batch_dim=(0, 0),
        )
        self._call = self._dispatcher(self._merged)
        self._loop = loop

    def close(self) -> None:
        """Stop the dispatcher's controller task and cancel what is queued."""
        if self._dispatcher is not None:
            self._dispatcher.shutdown()
            self._dispatcher = self._loop = None  # a later call builds a new one

    async def _merged(self, matrices: Sequence[np.ndarray]) -> list[np.ndarray]:
        X = matrices[0] if len(matrices) == 1 else np.concatenate(matrices)
        proba = self._predict(X)
        return np.split(proba, np.cumsum([len(m) for m in matrices[:-1]]))

    async def __call__(self, X: np.ndarray) -> np.ndarray:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bind(loop)
        proba = await self._call(X)
        if proba is None:  # the dispatcher turns a cancellation into its fallback
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError  # this request was cancelled (timeout): not overload
            raise Overloaded("the batching queue was cancelled before this call ran")
        return proba
