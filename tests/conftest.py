"""Test environment: a private BentoML home and model store, a known key, no .env file.

Everything here is set before BentoML is imported, so no test touches the user's store.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="fraudscore-tests-"))
os.environ.update({
    "BENTOML_HOME": str(_HOME / "bentoml"),
    "BENTOML_DO_NOT_TRACK": "True",
    "PROMETHEUS_MULTIPROC_DIR": str(_HOME / "prometheus"),
    "FRAUD_API_KEYS": "test-key-0123456789abcdef,second-key-0123456789abcdef",
    "API_KEY": "legacy-key-0123456789abcdef",
    # Many tests send a wrong key on purpose from one address; the throttle has its own tests.
    "FRAUD_AUTH_FAILURE_LIMIT": "1000000/minute",
})
for var in [v for v in os.environ if v.startswith("FRAUD_") and v not in (
        "FRAUD_API_KEYS", "FRAUD_AUTH_FAILURE_LIMIT")] + ["BENTOML_CONFIG"]:
    os.environ.pop(var, None)  # nothing of the developer's own environment leaks into a test
(_HOME / "prometheus").mkdir()

import pytest  # noqa: E402

from fraudscore.features import FEATURES  # noqa: E402
from fraudscore.training.data import generate  # noqa: E402
from fraudscore.training.trainer import TrainConfig, TrainResult, train  # noqa: E402

KEY = "test-key-0123456789abcdef"
SECOND_KEY = "second-key-0123456789abcdef"
LEGACY_KEY = "legacy-key-0123456789abcdef"
TINY = TrainConfig(n_estimators=12, n_jobs=1, seed=7)


@pytest.fixture(scope="session")
def trained() -> TrainResult:
    """A tiny model, registered once per session in the private store (becomes :latest)."""
    return train(generate(20_000, seed=7), TINY, progress=False, log=lambda *_: None)


@pytest.fixture(scope="session")
def stand_in():
    return generate(20_000, seed=7)


def tx_body(dataset, i: int, **extra) -> dict:
    """Row ``i`` of a dataset as a request body."""
    return {**{f: float(v) for f, v in zip(FEATURES, dataset.X[i], strict=True)}, **extra}


def need_service(name: str, host: str, port: int) -> None:
    """Skip (on a developer machine) or fail (in CI, CI=true) when a server does not answer."""
    import socket

    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} on {host}:{port} is not reachable in CI: {exc}")
        pytest.skip(f"{name} on {host}:{port} is not reachable here ({exc}); CI runs this test")


@pytest.fixture
def redis_url() -> str:
    """The local Redis (127.0.0.1:6379), database 15; tests use keys of their own."""
    need_service("Redis", "127.0.0.1", 6379)
    return "redis://127.0.0.1:6379/15"
