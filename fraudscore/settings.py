"""One settings object, read from the environment (and a git-ignored ``.env``), failing closed.

Every variable is prefixed ``FRAUD_`` except ``API_KEY``, which the FastAPI service this replaces
read and which is still honoured. ``get_settings()`` builds it once per process; tests call
``get_settings.cache_clear()`` after changing the environment.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_KEY_LENGTH = 16


class ConfigError(RuntimeError):
    """The service is not configured well enough to start."""


class NoApiKey(ConfigError):
    """No API key is configured at all."""


def env_file() -> Path | None:
    """The dotenv file settings are read from: FRAUD_ENV_FILE, default ./.env ("" for none)."""
    name = os.environ.get("FRAUD_ENV_FILE", ".env")
    return Path(name) if name else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRAUD_", env_file=".env", extra="ignore")

    # Comma-separated keys, all valid at once, for rotation.
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    # The old service's single key (no prefix).
    legacy_api_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices("API_KEY"))
    # A mounted secret: one key per line ('#' comments allowed).
    api_keys_file: Path | None = None

    model_tag: str = "fraud_detector:latest"
    # "model" = thresholds chosen from validation data at training; or an integer score 1-100
    # (50 is the static threshold of the service this replaces).
    decision_threshold: Literal["model"] | Annotated[int, Field(ge=1, le=100)] = "model"
    review_threshold: Literal["model"] | Annotated[int, Field(ge=1, le=100)] = "model"
    batch_max_items: Annotated[int, Field(ge=1, le=100_000)] = 1_000
    # Default: room for a full batch (about 800 bytes a transaction, doubled), at least 2 MiB.
    max_body_bytes: Annotated[int, Field(ge=1_024)] | None = None
    docs_public: bool = False
    # "onnx" (ONNX Runtime, the default and the only engine in the bento) or "sklearn".
    engine: Literal["onnx", "sklearn"] = "onnx"
    # Merge the model calls of concurrent small requests (fraudscore/scoring/batching.py); measured
    # worth it with both engines (README, Adaptive batching).
    adaptive_batching: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.max_body_bytes is None:
            self.max_body_bytes = max(2 * 1024 * 1024, 2_048 * self.batch_max_items)
        if (isinstance(self.decision_threshold, int) and isinstance(self.review_threshold, int)
                and self.review_threshold > self.decision_threshold):
            raise ValueError("FRAUD_REVIEW_THRESHOLD must not exceed FRAUD_DECISION_THRESHOLD")
        return self

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, v: object) -> object:
        if isinstance(v, str):
            return tuple(k.strip() for k in v.split(",") if k.strip())
        return v

    def resolved_api_keys(self) -> tuple[bytes, ...]:
        """All configured keys; raises :class:`NoApiKey` when there is none and
        :class:`ConfigError` when one is weak or the key file cannot be read.

        The old service's API_KEY is exempt from the length rule, so its clients keep working
        through the migration; new keys must be at least MIN_KEY_LENGTH characters."""
        keys = [k.get_secret_value() for k in self.api_keys]
        if self.api_keys_file is not None:
            try:
                text = self.api_keys_file.read_text()
            except OSError as exc:
                raise ConfigError(f"FRAUD_API_KEYS_FILE {self.api_keys_file}: {exc.strerror}") from None
            keys += [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        keys = [k.strip() for k in keys if k.strip()]
        if any(len(k) < MIN_KEY_LENGTH for k in keys):
            raise ConfigError(f"every API key must be at least {MIN_KEY_LENGTH} characters long")
        if self.legacy_api_key is not None and self.legacy_api_key.get_secret_value().strip():
            keys.append(self.legacy_api_key.get_secret_value().strip())
        if not keys:
            raise NoApiKey(
                "no API key configured: set FRAUD_API_KEYS (comma-separated), API_KEY or "
                "FRAUD_API_KEYS_FILE; the service refuses to start without one"
            )
        return tuple(dict.fromkeys(k.encode() for k in keys))

    # --- The decision store (fraudscore/store/; README, "The decision store") ---------------------
    # Where verdicts, labels and quality figures live: "sqlite:///path" or
    # "postgresql://user:password@host:5432/db". Default: SQLite in FRAUD_DATA_DIR, so `make serve`
    # needs no server. Secret (it may hold a password): read it with resolved_store_url().
    store_url: SecretStr | None = None
    # Folder of the default SQLite store (git-ignored).
    data_dir: Path = Path("data")
    # Record every verdict (off: nothing is written, the read API still answers from the store).
    decision_log: bool = True
    # Records a worker holds while the store is slow or down (~550 bytes each: 110 MB at the
    # default); past it, new ones are dropped and counted (fraud_decision_log_dropped_total).
    # 200,000 = 60 s of one worker at 3,300 decisions/s, about the service's single-transaction peak.
    decision_buffer: Annotated[int, Field(ge=100, le=10_000_000)] = 200_000
    # Decisions (and their labels) older than this are deleted, a few thousand rows at a time.
    # 400 days: a year of history for retraining and year-on-year comparison, plus the time a
    # late chargeback label needs to find its decision.
    decision_retention_days: Annotated[int, Field(ge=1, le=10_000)] = 400
    # The sliding window of the quality figures (precision, recall, alert rate, label delay).
    quality_window_days: Annotated[int, Field(ge=1, le=3_650)] = 30

    def resolved_store_url(self) -> str:
        """The store's URL (default: SQLite in FRAUD_DATA_DIR); :class:`ConfigError` naming
        FRAUD_STORE_URL when it is neither SQLite nor PostgreSQL. Never log it: it may hold a
        password (``fraudscore.store.engine.redact`` gives a printable form)."""
        if self.store_url is None or not self.store_url.get_secret_value().strip():
            return f"sqlite:///{(self.data_dir / 'fraudscore.db').resolve()}"
        url = self.store_url.get_secret_value().strip()
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme not in ("sqlite", "sqlite+pysqlite", "postgresql", "postgres", "postgresql+psycopg"):
            raise ConfigError(f"FRAUD_STORE_URL must start with sqlite:/// or postgresql://, got "
                              f"{scheme + '://...' if scheme else 'no scheme'}")
        return url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    # FRAUD_ENV_FILE="" reads no file (tests); the default is ./.env, which `make serve` writes.
    return Settings(_env_file=env_file())
