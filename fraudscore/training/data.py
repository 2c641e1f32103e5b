"""Training data: the real ``creditcard.csv`` (checked strictly) or a generated stand-in.

The stand-in follows ``shared/creditcard-stats.md``: same schema, 0.172% frauds, heavy-tailed
(Student-t) marginals, fraud features skewed and correlated through a shared "severity", Amount and
Time distributions with a day/night cycle. A minority of frauds look almost legitimate, so a forest
lands near the published real-data figures (AUPRC ~0.8, ROC-AUC ~0.95) rather than at 1.0.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from ..features import CSV_COLUMNS, FEATURES, LABEL

FRAUD_RATE = 0.00172
TIME_SPAN_S = 172_792.0
AMOUNT_MAX_LEGIT = 25_691.16
AMOUNT_MAX_FRAUD = 2_125.87

# (legit mean, fraud mean, fraud std, overall std) for V1..V28, from creditcard-stats.md.
_V_STATS = np.array([
    (0.008, -4.772, 6.784, 1.959), (-0.006, 3.624, 4.291, 1.651), (0.012, -7.033, 7.111, 1.516),
    (-0.008, 4.542, 2.873, 1.416), (0.005, -3.151, 5.372, 1.380), (0.002, -1.398, 1.858, 1.332),
    (0.010, -5.569, 7.207, 1.237), (-0.001, 0.571, 6.798, 1.194), (0.004, -2.581, 2.501, 1.099),
    (0.010, -5.677, 4.9, 1.09), (-0.007, 3.800, 2.7, 1.02), (0.011, -6.259, 4.7, 1.00),
    (0.000, -0.109, 1.1, 1.00), (0.012, -6.972, 4.3, 0.96), (0.000, -0.093, 1.05, 0.92),
    (0.007, -4.140, 3.9, 0.88), (0.012, -6.666, 7.0, 0.85), (0.004, -2.246, 2.9, 0.84),
    (-0.001, 0.681, 1.5, 0.81), (-0.001, 0.372, 1.35, 0.77), (-0.001, 0.714, 3.869, 0.735),
    (0.000, 0.014, 1.495, 0.726), (0.000, -0.040, 1.580, 0.624), (0.000, -0.105, 0.516, 0.606),
    (0.000, 0.041, 0.797, 0.521), (0.000, 0.052, 0.472, 0.482), (0.000, 0.171, 1.377, 0.404),
    (0.000, 0.076, 0.547, 0.330),
])
_T_DOF = 4.0  # Student-t degrees of freedom: heavy tails (kurtosis far above a Gaussian's)
_HARD_FRAUD_SHARE = 0.2  # frauds that barely differ from legitimate traffic
_HARD_FRAUD_SHIFT = 0.3  # ... carrying this fraction of the fraud mean shift


class DataError(ValueError):
    """The training data cannot be used; the message names the problem."""


@dataclass(frozen=True)
class Dataset:
    X: np.ndarray  # float64, shape (n, 30), columns in FEATURES order
    y: np.ndarray  # int8, shape (n,)
    source: str  # human-readable origin
    sha256: str  # of the file, or of the generated arrays

    @property
    def standin(self) -> bool:
        """Generated (wholly or in part), not real transactions."""
        return is_standin(self.source)


STANDIN_SOURCE = "generated stand-in"


def is_standin(source: str) -> bool:
    """A data source (as the model entry records it) that is, or includes, the generated stand-in."""
    return STANDIN_SOURCE in source


def _student_t(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Student-t draws scaled to unit variance."""
    return rng.standard_t(_T_DOF, size=shape) / np.sqrt(_T_DOF / (_T_DOF - 2.0))


def _times(rng: np.random.Generator, n: int, night_weight: float) -> np.ndarray:
    """Seconds over two days; activity dips at night (hours 0-6) by ``night_weight``."""
    out = np.empty(0)
    while out.size < n:
        t = rng.uniform(0.0, TIME_SPAN_S, size=2 * n + 16)
        hour = (t / 3600.0) % 24.0
        keep = rng.uniform(size=t.size) < np.where(hour < 6.0, night_weight, 1.0)
        out = np.concatenate([out, t[keep]])
    return np.round(out[:n])


def _amounts(rng: np.random.Generator, n: int, median: float, sigma: float, cap: float) -> np.ndarray:
    return np.round(np.clip(rng.lognormal(np.log(median), sigma, size=n), 0.0, cap), 2)


def generate(rows: int = 100_000, seed: int = 42, fraud_rate: float = FRAUD_RATE) -> Dataset:
    """A deterministic stand-in for creditcard.csv with ``rows`` rows (at least 10 frauds)."""
    if rows < 1_000:
        raise DataError(f"--rows must be at least 1000, got {rows}")
    rng = np.random.default_rng(seed)
    n_fraud = max(10, round(rows * fraud_rate))
    n_legit = rows - n_fraud
    legit_mean, fraud_mean, fraud_std, overall_std = _V_STATS.T

    legit_v = legit_mean + overall_std * _student_t(rng, (n_legit, 28))

    # Frauds: a shared, skewed severity per transaction shifts every feature at once, which
    # correlates the features within the class and pulls medians inside the means.
    severity = rng.lognormal(-0.32, 0.8, size=(n_fraud, 1))
    hard = rng.uniform(size=(n_fraud, 1)) < _HARD_FRAUD_SHARE
    severity = np.where(hard, _HARD_FRAUD_SHIFT * severity, severity)
    spread = np.sqrt(np.maximum(fraud_std**2 - 0.9 * fraud_mean**2, (0.35 * fraud_std) ** 2))
    spread = np.where(hard, overall_std, spread)
    fraud_v = legit_mean + severity * (fraud_mean - legit_mean) + spread * _student_t(rng, (n_fraud, 28))

    legit = np.column_stack([
        _times(rng, n_legit, night_weight=0.35), legit_v,
        _amounts(rng, n_legit, 22.0, 1.94, AMOUNT_MAX_LEGIT),
    ])
    fraud_amount = _amounts(rng, n_fraud, 9.25, 3.4, AMOUNT_MAX_FRAUD)
    fraud_amount[rng.uniform(size=n_fraud) < 0.25] = 1.00  # card-testing charges
    fraud = np.column_stack([_times(rng, n_fraud, night_weight=0.9), fraud_v, fraud_amount])

    X = np.vstack([legit, fraud])
    y = np.concatenate([np.zeros(n_legit, np.int8), np.ones(n_fraud, np.int8)])
    order = np.argsort(X[:, 0], kind="stable")  # chronological, like the real file
    X, y = X[order], y[order]
    digest = hashlib.sha256(X.tobytes() + y.tobytes()).hexdigest()
    return Dataset(X, y, f"{STANDIN_SOURCE} (rows={rows}, seed={seed})", digest)


def load_csv(path: str | Path) -> Dataset:
    """Load and check a creditcard.csv file; raise :class:`DataError` naming any problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a UTF-8 text file") from None
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None:
        raise DataError(f"{path} is empty")
    header = [h.strip() for h in header]
    expected = list(CSV_COLUMNS)
    if header != expected:
        missing = [c for c in expected if c not in header]
        extra = [c for c in header if c not in expected]
        if missing or extra:
            raise DataError(f"{path}: wrong columns: missing {missing or 'none'}, extra {extra or 'none'}")
        raise DataError(f"{path}: columns out of order; expected {','.join(expected)}")
    width = len(expected)
    values = np.empty((max(len(raw) // 200, 16), width))
    n = 0
    for lineno, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != width:
            raise DataError(f"{path} line {lineno}: {len(row)} fields, expected {width}")
        if n == values.shape[0]:
            values = np.resize(values, (2 * n, width))
        try:
            values[n] = [float(v) for v in row]
        except ValueError:
            bad = next(c for c, v in zip(expected, row, strict=True) if not _is_float(v))
            raise DataError(f"{path} line {lineno}: column {bad} is not a number") from None
        if not np.isfinite(values[n]).all():
            bad = expected[int(np.flatnonzero(~np.isfinite(values[n]))[0])]
            raise DataError(f"{path} line {lineno}: column {bad} is not finite")
        n += 1
    values = values[:n]
    if n == 0:
        raise DataError(f"{path} has a header but no rows")
    labels = values[:, -1]
    if not np.isin(labels, (0.0, 1.0)).all():
        raise DataError(f"{path}: column {LABEL} must be 0 or 1")
    n_fraud = int(labels.sum())
    if n_fraud == 0:
        raise DataError(f"{path} has no fraud rows ({LABEL}=1)")
    if n_fraud < 10 or n - n_fraud < 10:
        raise DataError(f"{path}: needs at least 10 rows of each class, has {n_fraud} frauds of {n}")
    X = np.ascontiguousarray(values[:, : len(FEATURES)])
    return Dataset(X, labels.astype(np.int8), f"file {path.name}", hashlib.sha256(raw).hexdigest())


def _is_float(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def write_csv(dataset: Dataset, path: str | Path) -> None:
    """Write a dataset in the real file's format (quoted header), e.g. for tests and demos."""
    with open(path, "w", newline="") as fh:
        fh.write(",".join(f'"{c}"' for c in CSV_COLUMNS) + "\n")
        w = csv.writer(fh)
        for row, label in zip(dataset.X, dataset.y, strict=True):
            w.writerow([repr(float(v)) for v in row] + [int(label)])


MIN_PER_CLASS = 10


def load_store(url: str, since: datetime | None = None) -> Dataset:
    """The labelled primary decisions of a decision store (each transaction once: its latest
    decision with its current label, fraud = 1); :class:`DataError` when the store cannot be read
    or holds too few labels of either class. The source names the store without its password."""
    from ..store.queries import StoreUnreadable, read_labelled

    try:
        (X, y, _, _), shown = read_labelled(url, since)
    except StoreUnreadable as exc:
        raise DataError(str(exc)) from None
    scope = f" since {since.isoformat()}" if since else ""
    if y.size == 0:
        raise DataError(f"{shown} has no labelled decisions{scope}")
    n_fraud = int(y.sum())
    if n_fraud < MIN_PER_CLASS or y.size - n_fraud < MIN_PER_CLASS:
        raise DataError(f"{shown}: needs at least {MIN_PER_CLASS} labelled decisions of "
                        f"each class{scope}, has {n_fraud} frauds of {y.size}")
    digest = hashlib.sha256(X.tobytes() + y.tobytes()).hexdigest()
    return Dataset(X, y, f"{shown}: {y.size} labelled decisions{scope}", digest)


def combine(first: Dataset, second: Dataset) -> Dataset:
    """Both data sets' rows (first's, then second's), named after both."""
    X = np.vstack([first.X, second.X])
    y = np.concatenate([first.y, second.y])
    digest = hashlib.sha256(X.tobytes() + y.tobytes()).hexdigest()
    return Dataset(X, y, f"{first.source} + {second.source}", digest)
