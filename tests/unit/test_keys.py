import hashlib
import logging
import os
import time

import pytest

from fraudscore.edge import keys as keys_module
from fraudscore.edge.keys import KeySource, load_keys, parse_key_file
from fraudscore.settings import ConfigError, NoApiKey, Settings

KEY_VARS = ("FRAUD_API_KEYS", "API_KEY", "FRAUD_API_KEYS_FILE")


@pytest.fixture
def no_keys(monkeypatch):
    for var in KEY_VARS:
        monkeypatch.delenv(var, raising=False)


def _ring(**env):
    return load_keys(Settings(_env_file=None, **env))


def test_env_and_legacy_keys_score_only(no_keys):
    ring = _ring(api_keys="a-key-0123456789abcdef, b-key-0123456789abcdef", API_KEY="legacy-0123456789abcdef")
    assert len(ring) == 3
    a, legacy = ring.find(b"a-key-0123456789abcdef"), ring.find(b"legacy-0123456789abcdef")
    assert a.scopes == legacy.scopes == frozenset({"score"}) and legacy.name == "legacy"
    assert a.name == "env-" + hashlib.sha256(b"a-key-0123456789abcdef").hexdigest()[:8]  # not the key
    assert ring.find(b"a-key-0123456789abcde") is None and ring.find(b"") is None


def test_no_key_fails_closed(no_keys):
    with pytest.raises(NoApiKey, match="no API key configured"):
        _ring()
    with pytest.raises(NoApiKey):
        _ring(api_keys=" , ")


def test_short_keys_are_refused_and_a_short_legacy_key_needs_an_opt_in(no_keys):
    with pytest.raises(ConfigError, match="at least 16"):
        _ring(api_keys="short")
    with pytest.raises(ConfigError, match="FRAUD_ALLOW_SHORT_LEGACY_KEY"):
        _ring(API_KEY="old-key")
    assert _ring(API_KEY="old-key", allow_short_legacy_key=True).find(b"old-key").name == "legacy"


def test_line_file_strips_before_the_comment_test(tmp_path, no_keys):
    path = tmp_path / "keys"
    path.write_text("# header\n  # rotated 2026-11\nfile-key-0123456789abcdef\n\n   \n")
    entries = parse_key_file(path, path.read_text())
    assert len(entries) == 1 and entries[0][0] == hashlib.sha256(b"file-key-0123456789abcdef").digest()
    path.write_text("ok-key-0123456789abcdef\nshort\n")
    with pytest.raises(ConfigError, match="line 2"):
        parse_key_file(path, path.read_text())


def test_toml_file_names_scopes_limits_and_digests(tmp_path, no_keys):
    path = tmp_path / "keys.toml"
    digest = hashlib.sha256(b"analyst-key-0123456789").hexdigest()
    path.write_text(f'''
[keys.checkout]
key = "checkout-key-0123456789"
rate_limit = "50/second"

[keys.analyst]
sha256 = "{digest}"
scopes = ["read", "label"]
rate_limit = "off"
''')
    ring = _ring(api_keys_file=str(path))
    checkout, analyst = ring.find(b"checkout-key-0123456789"), ring.find(b"analyst-key-0123456789")
    assert (checkout.name, checkout.scopes, checkout.rate_limit) == ("checkout", {"score"}, "50/second")
    assert (analyst.name, analyst.scopes, analyst.rate_limit) == ("analyst", {"read", "label"}, "off")


@pytest.mark.parametrize(("text", "message"), [
    ('[keys.a]\nkey = "k-0123456789abcdef"\nscope = ["score"]\n', r"unknown field\(s\) \['scope'\]"),
    ('[keys.a]\nkey = "k-0123456789abcdef"\nscopes = ["admin"]\n', "scopes must be"),
    ('[keys.a]\nscopes = ["score"]\n', "exactly one of key or sha256"),
    ('[keys.a]\nsha256 = "abc"\n', "64 hexadecimal"),
    ('[keys.a]\nkey = "short"\n', "at least 16"),
    ('[keys.a]\nkey = "k-0123456789abcdef"\nrate_limit = "lots"\n', "not a rate"),
    ('[keys."bad name"]\nkey = "k-0123456789abcdef"\n', "a name is"),
    ('[keys.a]\nkey = "k-0123456789abcdef"\n[keys.b]\nkey = "k-0123456789abcdef"\n', "the same key"),
    ('[keys.m]\nkey = "k-0123456789abcdef"\nblock_threshold = 60\n', r"\[keys.m\]: give both"),
    ('[keys.m]\nkey = "k-0123456789abcdef"\nblock_threshold = 60\nreview_threshold = 70\n',
     r"\[keys.m\]: review_threshold \(70\) must not exceed block_threshold \(60\)"),
    ('[keys.m]\nkey = "k-0123456789abcdef"\nblock_threshold = 101\nreview_threshold = 70\n',
     r"\[keys.m\]: block_threshold must be an integer score 1-100, got 101"),
    ('[keys.m]\nkey = "k-0123456789abcdef"\nblock_threshold = 80\nreview_threshold = 0\n',
     "review_threshold must be an integer score 1-100, got 0"),
    ('[keys.m]\nkey = "k-0123456789abcdef"\nblock_threshold = 80.5\nreview_threshold = 60\n',
     "block_threshold must be an integer"),
    ('[keys.m]\nkey = "k-0123456789abcdef"\nblock_threshold = true\nreview_threshold = 1\n',
     "block_threshold must be an integer"),
    ("[keys.a\n", "not valid TOML"),
    ('[other]\nx = 1\n', r"only \[keys.<name>\]"),
])
def test_toml_file_errors_name_the_problem(tmp_path, no_keys, text, message):
    path = tmp_path / "keys.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        _ring(api_keys_file=str(path))


def test_a_key_may_have_its_own_thresholds(tmp_path, no_keys):
    from fraudscore.scoring.thresholds import Thresholds

    path = tmp_path / "keys.toml"
    path.write_text('[keys.merchant_a]\nkey = "merchant-a-0123456789"\nblock_threshold = 80\n'
                    'review_threshold = 60\n\n[keys.plain]\nkey = "plain-key-0123456789"\n')
    ring = _ring(api_keys_file=str(path))
    assert ring.find(b"merchant-a-0123456789").thresholds == Thresholds(block=80, review=60)
    assert ring.find(b"plain-key-0123456789").thresholds is None


def test_an_unreadable_key_file_is_refused(tmp_path, no_keys):
    with pytest.raises(ConfigError, match="FRAUD_API_KEYS_FILE"):
        _ring(api_keys="a-key-0123456789abcdef", api_keys_file=str(tmp_path / "absent"))


def test_a_changed_key_file_is_reloaded_and_a_broken_one_keeps_the_keys(
        tmp_path, no_keys, monkeypatch, caplog):
    monkeypatch.setattr(keys_module, "RELOAD_CHECK_S", 0.0)
    path = tmp_path / "keys.toml"
    path.write_text('[keys.old]\nkey = "old-key-0123456789abcdef"\n')
    source = KeySource(Settings(_env_file=None, api_keys_file=str(path)))
    assert source.current().find(b"old-key-0123456789abcdef")
    # revoke the old key, add a new one: in force at the next check, no restart
    path.write_text('[keys.new]\nkey = "new-key-0123456789abcdef"\n')
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    ring = source.current()
    assert ring.find(b"old-key-0123456789abcdef") is None and ring.find(b"new-key-0123456789abcdef")
    # a typo must not lock everyone out: the previous keys stay, one ERROR says why
    path.write_text('[keys.new]\nkey = "new-key-0123456789abcdef"\nscopes = "score"\n')
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2_000_000))
    with caplog.at_level(logging.ERROR, logger="bentoml.fraudscore"):
        assert source.current().find(b"new-key-0123456789abcdef")
        assert source.current().find(b"new-key-0123456789abcdef")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "NOT reloaded" in errors[0].getMessage()
    assert "new-key-0123456789abcdef" not in caplog.text  # never a key in a log line
