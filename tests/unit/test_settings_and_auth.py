import pytest

from fraudscore.edge.auth import ApiKeyCheck
from fraudscore.settings import ConfigError, Settings


def _settings(**env) -> Settings:
    return Settings(_env_file=None, **env)


def test_keys_from_list_legacy_variable_and_file(tmp_path, monkeypatch):
    monkeypatch.delenv("FRAUD_API_KEYS")
    monkeypatch.delenv("API_KEY")
    secret = tmp_path / "keys"
    secret.write_text("# rotated 2026-11\nfile-key-0123456789abcdef\n\n")
    monkeypatch.setenv("FRAUD_API_KEYS", " a-key-0123456789abcdef , b-key-0123456789abcdef,")
    monkeypatch.setenv("API_KEY", "legacy-0123456789abcdef")
    monkeypatch.setenv("FRAUD_API_KEYS_FILE", str(secret))
    keys = Settings(_env_file=None).resolved_api_keys()
    assert keys == (b"a-key-0123456789abcdef", b"b-key-0123456789abcdef",
                    b"file-key-0123456789abcdef", b"legacy-0123456789abcdef")


def test_no_key_fails_closed(monkeypatch):
    monkeypatch.delenv("FRAUD_API_KEYS")
    monkeypatch.delenv("API_KEY")
    with pytest.raises(ConfigError, match="no API key configured"):
        _settings().resolved_api_keys()
    monkeypatch.setenv("FRAUD_API_KEYS", " , ")
    with pytest.raises(ConfigError, match="no API key configured"):
        _settings().resolved_api_keys()


def test_short_keys_and_unreadable_key_files_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("FRAUD_API_KEYS", "short")
    with pytest.raises(ConfigError, match="at least 16"):
        _settings().resolved_api_keys()
    monkeypatch.setenv("FRAUD_API_KEYS", "a-key-0123456789abcdef")
    monkeypatch.setenv("FRAUD_API_KEYS_FILE", str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match="FRAUD_API_KEYS_FILE"):
        _settings().resolved_api_keys()


def test_the_old_services_key_is_honoured_whatever_its_length(monkeypatch):
    monkeypatch.delenv("FRAUD_API_KEYS")
    monkeypatch.setenv("API_KEY", "old-key")
    assert _settings().resolved_api_keys() == (b"old-key",)


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


def test_key_check_accepts_every_configured_key_and_nothing_else():
    check = ApiKeyCheck([b"first-key-0123456789", b"second-key-0123456789"])
    assert check(b"first-key-0123456789") and check(b"second-key-0123456789")
    assert not check(b"first-key-012345678") and not check(b"") and not check(b"FIRST-KEY-0123456789")
    with pytest.raises(ValueError):
        ApiKeyCheck([])


def _protected_app(**kwargs):
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from fraudscore.edge.auth import ApiKeyMiddleware

    async def ok(_):
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route(p, ok) for p in ("/", "/docs.json", "/readyz", "/fraud_score")])
    return ApiKeyMiddleware(app, check=ApiKeyCheck([b"k" * 20]), **kwargs)


@pytest.mark.parametrize(("docs_public", "expected"), [(False, 403), (True, 200)])
def test_docs_ui_is_public_only_when_configured(docs_public, expected):
    from starlette.testclient import TestClient

    with TestClient(_protected_app(docs_public=docs_public)) as c:
        assert c.get("/").status_code == expected and c.get("/docs.json").status_code == expected
        assert c.get("/readyz").status_code == 200
        assert c.get("/fraud_score").status_code == 403  # scoring never follows the docs flag
        assert c.get("/fraud_score", headers={"X-API-Key": "k" * 20}).status_code == 200


def test_auth_answers_without_reading_the_body():
    import asyncio

    sent = []

    async def receive():
        raise AssertionError("the body was read")

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/fraud_score", "headers": [], "query_string": b""}
    asyncio.run(_protected_app()(scope, receive, send))
    assert sent[0]["status"] == 403
