"""The model wrappers: load a forest and return fraud probabilities. Know no HTTP.

Two engines read the same model-store entry:
- ``onnx`` (default): ``model.onnx`` with ONNX Runtime on one thread, ~8 us for one row;
- ``sklearn``: ``model.skops`` with scikit-learn, ~4 ms a call whatever the rows (for comparison
  and audits; needs the training extras, which the bento does not install).
Neither loads a pickle: an ONNX graph and a skops file restricted to known types run no code.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..features import FEATURES

# The only types a skops file of ours may contain beyond skops' own defaults (scikit-learn's
# forest and tree classes, numpy arrays): anything else is refused before it is built.
SKOPS_TRUSTED = ("sklearn.tree._tree.Tree",)


class Forest(Protocol):
    engine: str

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Fraud probability for each row of ``X`` (n, 30) in FEATURES order."""
        ...


class OnnxForest:
    """Runs the exported forest with ONNX Runtime on one thread (the service scales by workers)."""

    engine = "onnx"

    def __init__(self, onnx_bytes: bytes) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or inputs[0].shape[-1] != len(FEATURES):
            raise ValueError(f"ONNX graph must take one (n, {len(FEATURES)}) input")
        self._input = inputs[0].name
        names = [o.name for o in self._session.get_outputs()]
        if "probabilities" not in names:
            raise ValueError("ONNX graph has no 'probabilities' output (export with zipmap off)")
        self._outputs = ["probabilities"]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float32)
        (proba,) = self._session.run(self._outputs, {self._input: X})
        return proba[:, 1]


class SklearnForest:
    """The scikit-learn forest from its skops file, single-threaded (n_jobs=-1 is slower here)."""

    engine = "sklearn"

    def __init__(self, skops_bytes: bytes) -> None:
        try:
            import skops.io as sio
        except ImportError:
            raise ValueError("engine 'sklearn' needs scikit-learn and skops (the training extras), "
                             "which this environment does not have; use FRAUD_ENGINE=onnx") from None
        untrusted = set(sio.get_untrusted_types(data=skops_bytes)) - set(SKOPS_TRUSTED)
        if untrusted:
            raise ValueError(f"model.skops holds types this service does not load: {sorted(untrusted)}")
        from sklearn.ensemble import RandomForestClassifier

        self._forest = sio.loads(skops_bytes, trusted=list(SKOPS_TRUSTED))
        if not isinstance(self._forest, RandomForestClassifier):
            raise ValueError(f"model.skops holds a {type(self._forest).__name__}, "
                             "not a RandomForestClassifier")
        if getattr(self._forest, "n_features_in_", None) != len(FEATURES):
            raise ValueError(f"the scikit-learn model must take {len(FEATURES)} features")
        self._forest.n_jobs = None

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        # float32 like the ONNX graph, so both engines see the same inputs
        return self._forest.predict_proba(np.asarray(X, dtype=np.float32))[:, 1]
