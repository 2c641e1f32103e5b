"""The model-store entry: what ``train.py`` writes and the service reads, in one place.

An entry ``fraud_detector:<version>`` holds
- ``model.onnx``: the forest as an ONNX graph (what serving runs; loading it executes no code),
- ``model.skops``: the scikit-learn forest in skops format (no pickle), for audits and retraining,
- ``serving.json``: feature order, thresholds, per-feature training statistics, importances, the
  drift reference (training deciles per feature, validation score bins: ``drift_reference``) and
  the validation alert rate of every score (``threshold_reference``, for target-rate thresholds);
  entries trained before those two lack them and still load (no drift gauges; static thresholds),
- ``explain.npz``: the forest's paths and the training quantiles for reason codes (numpy arrays
  only, read with ``allow_pickle=False``; see fraudscore.scoring.explain). Entries trained before
  it existed lack it and still load,
and, in its metadata, metrics, training date, data source and SHA-256, library versions, and the
SHA-256 of each file above, which loading verifies.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODEL_NAME = "fraud_detector"
ONNX_FILE = "model.onnx"
SKOPS_FILE = "model.skops"
SERVING_FILE = "serving.json"
EXPLAIN_FILE = "explain.npz"
FORMAT_VERSION = 1
# what serving reads from serving.json
SERVING_KEYS = ("features", "thresholds", "feature_stats", "feature_importances")


class ArtifactError(RuntimeError):
    """A model-store entry is missing, incomplete or corrupt."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class LoadedArtifact:
    tag: str
    path: Path
    metadata: dict[str, Any]
    serving: dict[str, Any]
    model_bytes: bytes  # of ONNX_FILE or SKOPS_FILE: the one the chosen engine runs
    # verified bytes of the extra files asked for that the entry has (an older entry may lack one)
    extra: dict[str, bytes] = field(default_factory=dict)


def register(files: dict[str, bytes], metadata: dict[str, Any], labels: dict[str, str]) -> str:
    """Write ``files`` into one new model-store entry and return its tag.

    Nothing is left in the store if any step fails: bentoml.models.create only saves on success.
    """
    import bentoml

    metadata = {**metadata, "format_version": FORMAT_VERSION,
                "checksums": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}}
    with bentoml.models.create(MODEL_NAME, labels=labels, metadata=metadata) as model:
        root = Path(model.path)
        for name, data in files.items():
            (root / name).write_bytes(data)
        # Re-read what landed on disk before the entry is committed.
        for name, digest in metadata["checksums"].items():
            if sha256_file(root / name) != digest:
                raise ArtifactError(f"{name} changed while it was written")
    return str(model.tag)


def load(tag: str, model_file: str = ONNX_FILE, extra_files: Sequence[str] = ()) -> LoadedArtifact:
    """Fetch an entry, verify the checksums of ``model_file``, ``serving.json`` and those of
    ``extra_files`` the entry was written with, and read them.

    An extra file the entry was not written with (no checksum: an older entry) is left out of
    ``LoadedArtifact.extra``; one it was written with but that is missing or altered is refused
    like the model itself. Raises :class:`ArtifactError` with a reason fit for a 503 body and a
    log line.
    """
    import bentoml
    from bentoml.exceptions import BentoMLException, NotFound

    try:
        model = bentoml.models.get(tag)
    except NotFound:
        raise ArtifactError(f"model {tag!r} is not in the model store; run `make train`") from None
    except BentoMLException as exc:
        raise ArtifactError(f"model {tag!r} cannot be read from the store: {exc}") from None
    except Exception as exc:  # a corrupt model.yaml surfaces as yaml/attrs/cattrs errors
        raise ArtifactError(f"model {tag!r} has an unreadable model.yaml: {type(exc).__name__}") from None
    root = Path(model.path)
    metadata = dict(model.info.metadata)
    checksums = metadata.get("checksums")
    if metadata.get("format_version") != FORMAT_VERSION or not isinstance(checksums, dict):
        raise ArtifactError(f"model {model.tag} was not written by this project's train.py")
    verified = {}
    wanted = [model_file, SERVING_FILE, *(n for n in extra_files if n in checksums)]
    for name in dict.fromkeys(wanted):
        try:
            data = (root / name).read_bytes()  # the bytes checked are the bytes used
        except OSError:
            raise ArtifactError(f"model {model.tag} is missing {name}") from None
        if hashlib.sha256(data).hexdigest() != checksums.get(name):
            raise ArtifactError(f"model {model.tag}: checksum mismatch for {name}")
        verified[name] = data
    try:
        serving = json.loads(verified[SERVING_FILE])
    except ValueError:
        raise ArtifactError(f"model {model.tag}: {SERVING_FILE} is not valid JSON") from None
    missing = [k for k in SERVING_KEYS if not isinstance(serving, dict) or k not in serving]
    if missing:
        raise ArtifactError(f"model {model.tag}: {SERVING_FILE} lacks {', '.join(missing)}")
    extra = {name: verified[name] for name in extra_files if name in verified}
    return LoadedArtifact(str(model.tag), root, metadata, serving, verified[model_file], extra)
