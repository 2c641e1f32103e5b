"""Test environment: a private BentoML home and model store, a known key, no .env file; a private
PostgreSQL database per session for the store tests.

Everything here is set before BentoML is imported, so no test touches the user's store.
"""

from __future__ import annotations

import os
import secrets
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
    # the decision store's default SQLite file goes into the private home, not ./data
    "FRAUD_DATA_DIR": str(_HOME / "data"),
})
for var in [v for v in os.environ if v.startswith("FRAUD_") and v not in (
        "FRAUD_API_KEYS", "FRAUD_AUTH_FAILURE_LIMIT", "FRAUD_DATA_DIR")] + ["BENTOML_CONFIG"]:
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


# --- PostgreSQL (the store tests) -----------------------------------------------------------------
# The server the machine runs (trust auth); a private database per session, a schema per test.
PG_SERVERS = ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://root@127.0.0.1:5432/test")


def _pg_unavailable(reason: str):
    # A developer machine without PostgreSQL skips these tests; CI must not pass without them.
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required in CI: {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL: {reason}")


@pytest.fixture(scope="session")
def pg_database():
    """URL of a database created for this session (dropped after it)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    errors = []
    for server in PG_SERVERS:
        admin = create_engine(server.replace("postgresql://", "postgresql+psycopg://"),
                              isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        try:
            with admin.connect() as conn:
                name = f"fraudscore_test_{os.getpid()}_{secrets.token_hex(3)}"
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        except OperationalError as exc:
            errors.append(str(exc.orig).strip().splitlines()[0])
            admin.dispose()
            continue
        try:
            yield server.rsplit("/", 1)[0] + "/" + name
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        return
    _pg_unavailable("; ".join(errors))


def pg_schema_url(database_url: str, schema: str) -> str:
    """A URL whose connections use ``schema`` (created by the caller)."""
    return f"{database_url}?options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_url(pg_database):
    """A PostgreSQL URL with a fresh, empty schema of its own (dropped after the test)."""
    from sqlalchemy import create_engine, text

    schema = f"t_{secrets.token_hex(4)}"
    admin = create_engine(pg_database.replace("postgresql://", "postgresql+psycopg://"),
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield pg_schema_url(pg_database, schema)
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """An empty store of each kind: SQLite in tmp_path, PostgreSQL in a private schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'store.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(store_url):
    """An engine on a migrated, empty store."""
    from fraudscore.store.engine import create_store_engine
    from fraudscore.store.migrate import migrate

    engine = create_store_engine(store_url)
    migrate(engine=engine)
    yield engine
    engine.dispose()
