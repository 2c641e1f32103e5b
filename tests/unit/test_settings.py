import os

import pytest

from fraudscore.settings import ConfigError, Settings, env_file, load_settings


def _settings(**env) -> Settings:
    return Settings(_env_file=None, **env)


def test_an_unknown_fraud_variable_stops_the_start_naming_it(monkeypatch):
    monkeypatch.setenv("FRAUD_DECISION_TRESHOLD", "60")
    with pytest.raises(ConfigError, match="FRAUD_DECISION_TRESHOLD .did you mean FRAUD_DECISION_THRESHOLD"):
        load_settings()
    monkeypatch.delenv("FRAUD_DECISION_TRESHOLD")
    monkeypatch.setenv("FRAUD_API_KEY", "a client's variable, not the service's")
    assert load_settings().decision_threshold == "model"


def test_no_dotenv_file_is_read_unless_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("FRAUD_DECISION_THRESHOLD=77\n")
    assert env_file() is None and load_settings().decision_threshold == "model"
    monkeypatch.setenv("FRAUD_ENV_FILE", ".env")
    assert load_settings().decision_threshold == 77
    (tmp_path / ".env").write_text("FRAUD_BATCH_MAX_ITEM=5\n")  # a typo inside the file counts too
    with pytest.raises(ConfigError, match="FRAUD_BATCH_MAX_ITEM"):
        load_settings()
    monkeypatch.setenv("FRAUD_ENV_FILE", "absent.env")
    with pytest.raises(ConfigError, match="absent.env: no such file"):
        load_settings()


def test_invalid_values_name_the_variable(monkeypatch):
    for var, value, message in [("FRAUD_RATE_LIMIT", "fast", "FRAUD_RATE_LIMIT"),
                                ("FRAUD_TRUSTED_PROXIES", "10.0.0.0/8,not-an-ip", "not-an-ip"),
                                ("FRAUD_MAX_HEADERS", "2", "FRAUD_MAX_HEADERS"),
                                ("FRAUD_RATE_LIMIT_STORAGE", "mysql://x", "FRAUD_RATE_LIMIT_STORAGE")]:
        monkeypatch.setenv(var, value)
        with pytest.raises(ConfigError, match=message):
            load_settings()
        monkeypatch.delenv(var)


def test_rates_and_proxies_parse(monkeypatch):
    s = _settings(rate_limit="off", auth_failure_limit="5 per minute",
                  trusted_proxies="10.0.0.0/16, 127.0.0.1")
    assert s.rate_limit is None and s.auth_failure_limit == "5 per minute"
    assert s.trusted_proxies == ("10.0.0.0/16", "127.0.0.1")
    assert _settings().rate_limit == "2000/second"


def test_body_limit_grows_with_the_batch_cap():
    assert _settings().max_body_bytes == 2 * 1024 * 1024
    assert _settings(batch_max_items=5_000).max_body_bytes == 5_000 * 2_048
    assert _settings(max_body_bytes=4_096).max_body_bytes == 4_096


def test_keys_never_appear_in_the_settings_repr(monkeypatch):
    monkeypatch.setenv("FRAUD_API_KEYS", "a-very-secret-key-0123456789")
    assert "a-very-secret" not in repr(_settings()) and "a-very-secret" not in str(_settings())


def test_threshold_settings_accept_model_or_a_score(monkeypatch):
    assert _settings().decision_threshold == "model"
    monkeypatch.setenv("FRAUD_DECISION_THRESHOLD", "50")
    assert _settings().decision_threshold == 50
    monkeypatch.setenv("FRAUD_DECISION_THRESHOLD", "0")
    with pytest.raises(ValueError):
        _settings()


def test_env_example_names_only_real_settings():
    from pathlib import Path

    from fraudscore.settings import unknown_variables

    text = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    names = {ln.lstrip("# ").split("=", 1)[0] for ln in text.splitlines() if "=" in ln}
    names = {n for n in names if n.startswith("FRAUD_")}
    assert names and not unknown_variables(dict.fromkeys(names, "")), names
    assert "FRAUD_RATE_LIMIT" in names and os.environ.get("FRAUD_ENV_FILE") is None
