"""Every custom Prometheus metric, in one place.

Plain ``prometheus_client`` (BentoML 1.4 deprecates ``bentoml.metrics``): in a worker of
``bentoml serve`` PROMETHEUS_MULTIPROC_DIR is set, so these land in the multiprocess directory and
``/metrics`` serves them beside BentoML's own (``bentoml_service_request_*``).
"""

from __future__ import annotations

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

DECISIONS = Counter(
    name="fraud_decisions",
    documentation="Scored transactions by decision",
    labelnames=["decision", "model_version"],
)
SCORES = Histogram(
    name="fraud_score",
    documentation="Distribution of the 0-100 fraud score (drift shows here first)",
    labelnames=["model_version"],
    buckets=(1, 2, 5, 10, 20, 30, 50, 70, 90, 100),
)
INFERENCE_SECONDS = Histogram(
    name="fraud_model_inference_seconds",
    documentation="Time spent in the model per call (one call scores one or many rows)",
    labelnames=["model_version"],
    buckets=(0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05),
)
OUT_OF_RANGE = Counter(
    name="fraud_feature_out_of_range",
    documentation="Feature values outside the 0.1%-99.9% range seen in training (OOD signal)",
    labelnames=["feature", "model_version"],
)
REJECTED = Counter(
    name="fraud_requests_rejected",
    documentation="Requests refused at the edge, by reason",
    labelnames=["reason"],
)
BATCH_ROWS = Histogram(
    name="fraud_model_batch_rows",
    documentation="Rows per model call: above a request's own rows when adaptive batching merges calls",
    labelnames=["model_version"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)

# The decision log (fraudscore/store/writer.py). Its writer thread publishes these a few times a
# second from plain counters, so recording a decision on the request path touches no metric.
# Gauges are per worker process: "livesum"/"livemax" combine the live workers in multiprocess mode.
DECISION_LOG_BUFFERED = Gauge(
    name="fraud_decision_log_buffered",
    documentation="Decisions held in memory, not yet written to the store",
    multiprocess_mode="livesum",
)
DECISION_LOG_OLDEST_SECONDS = Gauge(
    name="fraud_decision_log_oldest_unwritten_seconds",
    documentation="Age of the oldest decision not yet written (0 when none is waiting)",
    multiprocess_mode="livemax",
)
DECISION_LOG_WRITTEN = Counter(
    name="fraud_decision_log_written",
    documentation="Decisions written to the store",
)
DECISION_LOG_DROPPED = Counter(
    name="fraud_decision_log_dropped",
    documentation="Decisions never written: buffer full, unwritable, or left at shutdown",
    labelnames=["reason"],
)
DECISION_LOG_WRITE_ERRORS = Counter(
    name="fraud_decision_log_write_errors",
    documentation="Failed attempts to write a batch of decisions (each is retried)",
)
DECISION_LOG_BATCH_SECONDS = Histogram(
    name="fraud_decision_log_batch_seconds",
    documentation="Time to write one batch of decisions (encode, send, commit)",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
)


def observe_many(histogram_child, values: np.ndarray) -> None:
    """``histogram_child.observe(v)`` for every value, with one update per bucket.

    Observing 1,000 scores one by one costs ~2,000 locked writes to the multiprocess files; this
    does what ``Histogram.observe`` does (a value lands in the first bucket whose bound is >= it)
    with one write per non-empty bucket. It reads prometheus_client's ``_upper_bounds``,
    ``_buckets`` and ``_sum`` (0.2x layout, pinned in uv.lock; a unit test compares both ways).
    """
    if values.size == 0:
        return
    idx = np.searchsorted(np.asarray(histogram_child._upper_bounds), values, side="left")
    for i, n in enumerate(np.bincount(idx, minlength=len(histogram_child._upper_bounds)).tolist()):
        if n:
            histogram_child._buckets[i].inc(n)
    histogram_child._sum.inc(float(values.sum()))
