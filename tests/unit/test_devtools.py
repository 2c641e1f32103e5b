"""`make serve`'s first-run helpers."""

import stat

import pytest

from fraudscore import devtools
from fraudscore.settings import get_settings


@pytest.fixture
def env_file(tmp_path, monkeypatch):
    path = tmp_path / "dev.env"
    monkeypatch.setenv("FRAUD_ENV_FILE", str(path))
    for var in ("FRAUD_API_KEYS", "API_KEY", "FRAUD_API_KEYS_FILE"):
        monkeypatch.delenv(var, raising=False)
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def test_generates_a_private_key_once(env_file, capsys):
    env_file.write_text("FRAUD_DOCS_PUBLIC=true\n")
    assert devtools.ensure_key() == 0
    text = env_file.read_text()
    key = text.split("FRAUD_API_KEYS=")[1].strip()
    assert len(key) >= 32 and "FRAUD_DOCS_PUBLIC=true" in text
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert key not in capsys.readouterr().out  # printed: how to read it, never the key
    get_settings.cache_clear()
    assert devtools.ensure_key() == 0 and env_file.read_text() == text  # kept, not replaced


def test_never_replaces_a_key_the_user_set(env_file, capsys):
    env_file.write_text("FRAUD_API_KEYS=short\n")
    assert devtools.ensure_key() == 1
    assert env_file.read_text() == "FRAUD_API_KEYS=short\n"
    assert "at least 16" in capsys.readouterr().err


def test_has_model(trained, monkeypatch):
    monkeypatch.setenv("FRAUD_MODEL_TAG", trained.tag)
    get_settings.cache_clear()
    try:
        assert devtools.has_model() == 0
        monkeypatch.setenv("FRAUD_MODEL_TAG", "fraud_detector:nosuchversion")
        get_settings.cache_clear()
        assert devtools.has_model() == 1
    finally:
        get_settings.cache_clear()
