"""Decision quality as Prometheus gauges, refreshed in the background.

Every ``FRAUD_QUALITY_REFRESH_S`` seconds the first worker (BentoML's worker 1; the others would
compute the same figures from the same store) runs the window's quality query over the LABELLED
transactions only (store/quality.py, the figures ``make report`` prints) in a thread of its own
and publishes precision, recall, labelled transactions and the label delay per model version and
role. Reading only labelled transactions keeps the cost proportional to the labels, not to the
traffic: the whole window's scan that ``make report`` does took 3.6 s of CPU for 175,000
decisions in SQLite (~20 us each), which a worker must not spend every few minutes. The alert
rate comes from the counters instead: ``fraud_decisions_total``. A figure with no data (no labels
yet) is NaN; a store that is down keeps the last values and is logged once per failure streak.
"""

from __future__ import annotations

import logging
import math
import threading
from datetime import datetime, timedelta

from sqlalchemy import Engine

from ..ops import metrics
from .engine import describe_error
from .quality import quality

log = logging.getLogger("bentoml.fraudscore.store")
FIRST_DELAY_S = 60.0  # not while the service is starting and warming up


def _value(x: float | None) -> float:
    return math.nan if x is None else float(x)


def publish(rows: list[dict]) -> None:
    """Set the gauges from :func:`quality`'s rows."""
    for row in rows:
        labels = (row["model_version"], row["role"])
        metrics.QUALITY_PRECISION.labels(*labels).set(_value(row["precision"]))
        metrics.QUALITY_RECALL.labels(*labels).set(_value(row["recall"]))
        metrics.QUALITY_LABELLED.labels(*labels).set(row["labelled"])
        metrics.QUALITY_LABEL_DELAY.labels(*labels, "0.5").set(_value(row["label_delay_p50_s"]))
        metrics.QUALITY_LABEL_DELAY.labels(*labels, "0.9").set(_value(row["label_delay_p90_s"]))


class QualityGauges:
    def __init__(self, engine: Engine, window_days: int, interval_s: float) -> None:
        self._engine, self._window, self._interval = engine, timedelta(days=window_days), interval_s
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="quality-gauges", daemon=True)
        self._thread.start()

    def refresh(self, now: datetime | None = None) -> None:
        try:
            publish(quality(self._engine, self._window, now, labelled_only=True))
        except Exception as exc:  # the store is down or not migrated yet: keep the last values
            if not self._failing:
                log.warning("decision quality not refreshed: %s", describe_error(exc))
            self._failing = True
            return
        self._failing = False

    def _run(self) -> None:
        delay = min(FIRST_DELAY_S, self._interval)
        while not self._stop.wait(delay):
            self.refresh()
            delay = self._interval

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
