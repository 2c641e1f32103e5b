"""The model wrapper: loads an ONNX forest and returns fraud probabilities. Knows no HTTP."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from .features import FEATURES


class OnnxForest:
    """Runs the exported forest with ONNX Runtime on one thread (the service scales by workers)."""

    def __init__(self, onnx_bytes: bytes) -> None:
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
        """Fraud probability for each row of ``X`` (n, 30) in FEATURES order."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        (proba,) = self._session.run(self._outputs, {self._input: X})
        return proba[:, 1]
