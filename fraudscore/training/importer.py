"""Bring an existing model: the FastAPI service's ``fraud-model.joblib`` into the model store.

``train.py --import-joblib PATH --trust-pickle`` calls :func:`import_joblib`: the file is checked
(a fitted scikit-learn RandomForestClassifier over the 30 features in the schema's order, classes 0
and 1), evaluated on held-out data (the stand-in, or ``--data``), exported to ONNX with the same
parity check, explainer, thresholds and report as training (trainer.finish), and registered as a
candidate. It never becomes the production model without ``make promote``.

joblib files are pickles: loading one runs whatever code it names. Import only files you made or
trust; nothing here can make an untrusted pickle safe, hence the explicit ``--trust-pickle``.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..features import FEATURES
from .data import DataError, Dataset
from .trainer import TrainConfig, TrainResult, _split, finish


class ImportRefused(DataError):
    """The file is not a model this service can take; the message names the problem."""


def load_forest(path: str | Path) -> tuple[Any, str]:
    """The checked forest of a joblib file and the file's SHA-256; :class:`ImportRefused`."""
    import joblib
    from sklearn.ensemble import RandomForestClassifier

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImportRefused(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. a pickle of another scikit-learn version
            obj = joblib.load(io.BytesIO(raw))  # the bytes hashed below, read once
    except Exception as exc:  # noqa: BLE001 (whatever a non-joblib file makes the unpickler raise)
        raise ImportRefused(f"{path} is not a joblib file ({type(exc).__name__}: {str(exc)[:100]})") from None
    if not isinstance(obj, RandomForestClassifier):
        raise ImportRefused(f"{path} holds a {type(obj).__module__}.{type(obj).__name__}, "
                            "not a scikit-learn RandomForestClassifier")
    if not hasattr(obj, "estimators_"):
        raise ImportRefused(f"{path}: the RandomForestClassifier was never fitted")
    n = getattr(obj, "n_features_in_", None)
    if n != len(FEATURES):
        raise ImportRefused(f"{path}: the forest takes {n} features, the schema has {len(FEATURES)} "
                            f"({FEATURES[0]},{FEATURES[1]}..{FEATURES[-2]},{FEATURES[-1]})")
    names = getattr(obj, "feature_names_in_", None)
    if names is not None:
        if [str(v) for v in names] != list(FEATURES):
            raise ImportRefused(f"{path}: the forest's features are {','.join(map(str, names))}; "
                                f"expected {','.join(FEATURES)} in this order")
        # it is given arrays in that order from here on (and would warn about the missing names)
        del obj.feature_names_in_
    classes = np.asarray(getattr(obj, "classes_", []))
    if classes.shape != (2,) or not np.array_equal(classes, [0, 1]):
        raise ImportRefused(f"{path}: the forest's classes are {classes.tolist()}, expected [0, 1] "
                            "(legitimate, fraud)")
    obj.set_params(n_jobs=None)  # one core, like the training exports
    return obj, hashlib.sha256(raw).hexdigest()


def import_joblib(path: str | Path, data: Dataset, cfg: TrainConfig | None = None,
                  log: Any = print) -> TrainResult:
    """Check, evaluate, export and register the forest of ``path`` as a candidate entry. The
    data's split gives the reference statistics (its 60% "train" part: feature statistics and
    the reason codes' quantiles), the thresholds (validation) and the held-out figures (test)."""
    cfg = cfg or TrainConfig()
    forest, digest = load_forest(path)
    name = Path(path).name
    split = _split(data.y, cfg)
    log(f"imported {name}: RandomForestClassifier, {len(forest.estimators_)} trees; evaluating on "
        f"{data.source}: {data.y.size} rows, {int(data.y.sum())} frauds")
    origin = {
        "origin": f"train.py --import-joblib {name}",
        "data_source": f"unknown: imported from {name} (SHA-256 {digest[:16]}...)",
        "data_sha256": digest,
        "trained_on_standin": False,  # unknown; the gate judges the held-out data it is measured on
        "imported_file": {"name": name, "sha256": digest},
    }
    params = {k: ("none" if v is None else v if isinstance(v, str | int | float | bool) else str(v))
              for k, v in forest.get_params().items()}
    described = (f"{len(forest.estimators_)} trees, max_depth {forest.max_depth}, "
                 f"min_samples_leaf {forest.min_samples_leaf}, max_features {forest.max_features} "
                 f"(imported from {name})")
    return finish(forest, data, split, cfg, origin, params, described, log)
