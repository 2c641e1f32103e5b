"""The labelled decisions of a decision store as the input of ``backtest --from-store``.

Each labelled transaction once: the features of its latest primary decision and its current
label (as ``train.py --from-store`` reads them), in chunks like a file's, with a ``label`` column
(1 = fraud). The span of the decisions' times gives the days the input covers: a stored
transaction's ``Time`` is the client's own count of seconds, not a clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import numpy as np
import pyarrow as pa

from ..features import FEATURES
from ..store.queries import StoreUnreadable, read_labelled
from .sources import Chunk, InputError, Source

LABEL = "label"


class StoreSource(Source):
    def __init__(self, url: str, since: datetime | None, chunk_rows: int) -> None:
        try:
            self._data, shown = read_labelled(url, since)
        except StoreUnreadable as exc:
            raise InputError(str(exc)) from None
        scope = f" since {since.isoformat()}" if since else ""
        self.path = shown + scope  # what messages and the report call the input
        self.names = [*FEATURES, LABEL]
        self.total_rows = len(self._data.y)
        self._chunk_rows = chunk_rows
        if self.total_rows == 0:
            raise InputError(f"{self.path} has no labelled decisions")

    @property
    def days(self) -> float:
        """Days from the first to the last decision (0 when they share a second)."""
        at = self._data.decided_at
        return float(at.max() - at.min()) / 86_400

    def chunks(self) -> Iterator[Chunk]:
        X, y, ids = self._data.X, self._data.y, self._data.transaction_ids
        for start in range(0, len(y), self._chunk_rows):
            stop = min(start + self._chunk_rows, len(y))
            features = [np.ascontiguousarray(X[start:stop, j]) for j in range(len(FEATURES))]
            batch = pa.RecordBatch.from_arrays([*map(pa.array, features), pa.array(y[start:stop])],
                                               names=self.names)
            yield Chunk(batch, features, lambda row, start=start: f"transaction {ids[start + row]!r}")
