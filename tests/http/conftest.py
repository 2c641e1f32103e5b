"""In-process HTTP tier: the service's real ASGI app (all middleware, lifespan, __init__)."""

from __future__ import annotations

import os

import pytest
from starlette.testclient import TestClient

from tests.conftest import KEY

ANALYST_KEY = "analyst-key-0123456789abcdef"  # scopes read and label (the key file below)
READER_KEY = "reader-key-0123456789abcdef"  # scope read
MERCHANT_KEY = "merchant-key-0123456789abcdef"  # scope score, its own thresholds: block 95, review 50


@pytest.fixture(scope="session")
def app_client(trained, tmp_path_factory):
    # Built once per process: BentoML registers its metrics when the app is built.
    os.environ["FRAUD_MODEL_TAG"] = trained.tag  # pin: other tests register newer models
    keys = tmp_path_factory.mktemp("keys") / "keys.toml"
    keys.write_text(f'[keys.analyst]\nkey = "{ANALYST_KEY}"\nscopes = ["read", "label"]\n\n'
                    f'[keys.reader]\nkey = "{READER_KEY}"\nscopes = ["read"]\n\n'
                    f'[keys.merchant_a]\nkey = "{MERCHANT_KEY}"\n'
                    'block_threshold = 95\nreview_threshold = 50\n')
    os.environ["FRAUD_API_KEYS_FILE"] = str(keys)
    from fraudscore.settings import get_settings

    get_settings.cache_clear()
    from service import FraudScorer

    with TestClient(FraudScorer.to_asgi(), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def client(app_client):
    return app_client


@pytest.fixture
def auth():
    return {"X-API-Key": KEY}
