"""Every Prometheus metric the service exports, in one place.

Plain ``prometheus_client``: in a worker of ``bentoml serve`` PROMETHEUS_MULTIPROC_DIR is set, so
these land in the multiprocess directory and ``GET /metrics`` (handlers.py) serves every worker's.
BentoML's own request metrics are off (configuration in service.py): they labelled requests with
the raw path, so any caller, even one without a key, could create series without bound. Ours are
labelled with the route table's templates; every other path counts as ``other``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np


def _own_directory() -> None:
    """Give this server its own multiprocess directory, before any metric value exists.

    Every `bentoml serve` empties $BENTOML_HOME/prometheus_multiproc_dir when it starts, so a
    second server on the same BENTOML_HOME wiped the first one's metrics, and /metrics of either
    then mixed both. In a worker, the files go to <tmp>/fraudscore-metrics/<server pid> instead
    (the server is the worker's parent): one directory per server, not wiped by another.
    Directories of servers that are gone are removed, and so are the live gauges of workers
    that died (their in-progress counts would otherwise stay in the sums)."""
    current = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    home = os.environ.get("BENTOML_HOME", str(Path.home() / "bentoml"))
    if not current or Path(current) != Path(home) / "prometheus_multiproc_dir" or not _in_worker():
        return
    base = Path(tempfile.gettempdir()) / f"fraudscore-metrics-{os.getuid()}"
    base.mkdir(mode=0o700, exist_ok=True)
    for old in base.iterdir():
        if old.name.isdigit() and not _alive(int(old.name)):
            shutil.rmtree(old, ignore_errors=True)
    mine = base / str(os.getppid())
    mine.mkdir(exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(mine)
    from prometheus_client import multiprocess

    for file in mine.glob("gauge_live*_*.db"):
        pid = file.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), str(mine))


def _in_worker() -> bool:
    from bentoml._internal.context import server_context  # set before the service is loaded

    return server_context.worker_index is not None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_own_directory()

from prometheus_client import Counter, Gauge, Histogram  # noqa: E402 (after the directory is chosen)

HTTP_REQUESTS = Counter(
    name="fraud_http_requests",
    documentation="HTTP requests answered, by route template (other: not a route), method and status",
    labelnames=["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    name="fraud_http_request_duration_seconds",
    documentation="Time from the request reaching the edge to its answer, by route template",
    labelnames=["route"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0),
)
RATE_LIMITED = Counter(
    name="fraud_rate_limited",
    documentation="Requests refused with 429: over a key's rate (key) or from an address with too "
                  "many failed authentications (auth_failures)",
    labelnames=["kind"],
)
RATE_LIMIT_ERRORS = Counter(
    name="fraud_rate_limit_errors",
    documentation="Rate-limit storage failures (Redis down or slow): those requests were let through",
)
KEY_RELOADS = Counter(
    name="fraud_api_key_reloads",
    documentation="Reloads of FRAUD_API_KEYS_FILE after it changed, by outcome (error: previous keys kept)",
    labelnames=["outcome"],
)
OVERLOADED = Gauge(
    name="fraud_overloaded",
    documentation="1 while a worker sheds requests because its queue has stood above the target",
    multiprocess_mode="livemax",
)

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
# Drift and thresholds (fraudscore/ops/drift.py, fraudscore/scoring/watch.py). Each worker computes
# its own from the rows it scored; "livemax" shows the highest of the live workers (watch.py says why).
DRIFT_PSI = Gauge(
    name="fraud_drift_psi",
    documentation="PSI of a feature over the worker's recent rows vs training (<0.1 stable, "
                  "0.1-0.25 moderate, >0.25 major shift); absent for entries without a drift reference",
    labelnames=["feature"],
    multiprocess_mode="livemax",
)


@lru_cache(maxsize=1)
def score_psi() -> Gauge:
    """``fraud_score_psi``, made on first use: a gauge without labels is exported (as 0) from the
    moment it exists, and 0 would claim "no drift" for a model that has no drift reference."""
    return Gauge(name="fraud_score_psi",
                 documentation="PSI of the 0-100 score over the worker's recent rows vs validation scores",
                 multiprocess_mode="livemax")


BLOCK_THRESHOLD = Gauge(
    name="fraud_block_threshold",
    documentation="Block threshold in force for keys without their own (target-rate mode moves it)",
    labelnames=["model_version"],
    multiprocess_mode="livemax",
)
REVIEW_THRESHOLD = Gauge(
    name="fraud_review_threshold",
    documentation="Lower edge of the review band in force for keys without their own",
    labelnames=["model_version"],
    multiprocess_mode="livemax",
)
MODEL_READY = Gauge(
    name="fraud_model_ready",
    documentation="1 while the model is loaded and serving; 0 (labelled with the requested tag) "
                  "when the worker could not load it",
    labelnames=["model_version"],
    multiprocess_mode="livemax",
)
REJECTED = Counter(
    name="fraud_requests_rejected",
    documentation="Requests refused at the edge, by reason",
    labelnames=["reason"],
)
SHADOW_DROPPED = Counter(
    name="fraud_shadow_dropped",
    documentation="Transactions the shadow model could not keep up with (not scored by it)",
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
    documentation=("Decisions never written: buffer full, unwritable, left at shutdown, or held by a "
                   "writer process that died"),
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

# The alert outbox (fraudscore/alerts/). Every worker's sender reads the same table, so the gauges
# are the same figure seen by each live worker: "livemax", never a sum.
ALERTS_OUTBOX_DEPTH = Gauge(
    name="fraud_alerts_outbox_depth",
    documentation="Alerts waiting in the outbox (pending rows, every destination)",
    multiprocess_mode="livemax",
)
ALERTS_OLDEST_PENDING_SECONDS = Gauge(
    name="fraud_alerts_oldest_pending_seconds",
    documentation="Age of the oldest pending alert, from its decision (0 when none is waiting)",
    multiprocess_mode="livemax",
)
ALERTS_SENT = Counter(
    name="fraud_alerts_sent",
    documentation="Alerts delivered (a Slack digest counts every alert it stands for)",
    labelnames=["destination"],
)
ALERTS_FAILED = Counter(
    name="fraud_alerts_failed",
    documentation="Failed delivery attempts (each is retried with backoff, or dead-lettered)",
    labelnames=["destination"],
)
ALERTS_DEAD_LETTERED = Counter(
    name="fraud_alerts_dead_lettered",
    documentation="Alerts given up: refused by the receiver (4xx) or older than FRAUD_ALERT_MAX_AGE",
    labelnames=["destination"],
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

# Decision quality over FRAUD_QUALITY_WINDOW_DAYS (fraudscore/store/quality_gauges.py): every
# worker computes the same figures from the same store, so the most recent value is the value.
_QUALITY = {"multiprocess_mode": "livemostrecent", "labelnames": ["model_version", "role"]}
QUALITY_PRECISION = Gauge(name="fraud_quality_precision",
                          documentation="Labelled frauds blocked / labelled blocked, in the window",
                          **_QUALITY)
QUALITY_RECALL = Gauge(name="fraud_quality_recall",
                       documentation="Labelled frauds blocked / labelled frauds, in the window", **_QUALITY)
QUALITY_LABELLED = Gauge(name="fraud_quality_labelled_transactions",
                         documentation="Transactions with a current label, in the window", **_QUALITY)
QUALITY_LABEL_DELAY = Gauge(name="fraud_quality_label_delay_seconds",
                            documentation="Label delay (first decision to label received), by quantile",
                            multiprocess_mode="livemostrecent",
                            labelnames=["model_version", "role", "quantile"])
