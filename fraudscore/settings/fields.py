"""The settings object: every setting, its default and its checks (loading: loading.py)."""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_KEY_LENGTH = 16
MIN_ALERT_SECRET_LENGTH = 32
_UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}


class ConfigError(RuntimeError):
    """The service is not configured well enough to start."""


class NoApiKey(ConfigError):
    """No API key is configured at all."""


def check_rate(value: str | None, setting: str) -> str | None:
    """A rate such as "2000/second" or "20 per minute" (the `limits` notation); "off" = none."""
    if value is None or value.strip().lower() in ("", "off", "none"):
        return None
    from limits import parse

    try:
        item = parse(value)
    except ValueError:
        item = None
    if item is None or item.amount < 1:
        raise ValueError(f"{setting}: {value!r} is not a rate such as '2000/second'")
    return value.strip()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRAUD_", extra="ignore")

    # --- Keys (fraudscore/edge/keys.py) -----------------------------------------------------
    # Comma-separated keys, all valid at once, for rotation; scope `score` only.
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    # The old service's single key (no prefix); scope `score` only.
    legacy_api_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices("API_KEY"))
    # The old API_KEY may be shorter than MIN_KEY_LENGTH only with this explicit opt-in.
    allow_short_legacy_key: bool = False
    # A mounted file: named keys with scopes and limits (*.toml), or one key per line.
    # Re-read when it changes, without a restart.
    api_keys_file: Path | None = None

    # --- Model and decisions ------------------------------------------------------------------
    model_tag: str = "fraud_detector:latest"
    # "model" = thresholds chosen from validation data at training; or an integer score 1-100
    # (50 is the static threshold of the service this replaces).
    decision_threshold: Literal["model"] | Annotated[int, Field(ge=1, le=100)] = "model"
    review_threshold: Literal["model"] | Annotated[int, Field(ge=1, le=100)] = "model"
    # "static": the thresholds above, fixed. "target-rate": the block threshold follows the score
    # that holds the block rate at FRAUD_TARGET_BLOCK_RATE over each worker's last
    # FRAUD_THRESHOLD_WINDOW scores, within bounds from the model's validation scores
    # (fraudscore/scoring/adaptive.py). Keys with their own thresholds (key file) keep them.
    threshold_mode: Literal["static", "target-rate"] = "static"
    target_block_rate: Annotated[float, Field(gt=0.0, lt=0.5)] | None = None
    threshold_window: Annotated[int, Field(ge=1_000, le=10_000_000)] = 50_000
    # Rows per worker over which drift (PSI per feature and of the score) is measured; 0 = off.
    drift_window: Annotated[int, Field(ge=0, le=10_000_000)] = 10_000
    # "onnx" (ONNX Runtime, the default and the only engine in the bento) or "sklearn".
    engine: Literal["onnx", "sklearn"] = "onnx"
    # Merge the model calls of concurrent small requests (fraudscore/scoring/batching.py).
    adaptive_batching: bool = True
    # Reasons per review/block verdict (and per verdict with ?explain=true); 0: no reasons at all.
    reasons_top_k: Annotated[int, Field(ge=0, le=30)] = 3
    # A challenger: scores the same transactions off the request path, recorded with role
    # "shadow" in the decision log; it never decides.
    shadow_model_tag: str | None = None
    docs_public: bool = False

    # --- Promotion gate (`make promote`, fraudscore/training/promote.py; README, "Promoting a
    # model"). Floors on the held-out figures of a candidate. Published forests on the real
    # creditcard.csv reach AUPRC ~0.82 and recall ~0.75-0.8 at the F1-optimal threshold; the
    # default stand-in run 0.765 / 0.74 (model/README.md). Below 30 held-out frauds a recall moves
    # by >3 points per fraud: too few to judge.
    promote_min_auprc: Annotated[float, Field(ge=0, le=1)] = 0.70
    promote_min_recall: Annotated[float, Field(ge=0, le=1)] = 0.70
    promote_min_frauds: Annotated[int, Field(ge=1)] = 30

    # --- Request limits (fraudscore/edge/protocol.py, fraudscore/edge/app.py) -------------------
    batch_max_items: Annotated[int, Field(ge=1, le=100_000)] = 1_000
    # Default: room for a full batch (about 800 bytes a transaction, doubled), at least 2 MiB.
    max_body_bytes: Annotated[int, Field(ge=1_024)] | None = None
    # Request line and headers together, and how many header lines (over either: 431).
    max_header_bytes: Annotated[int, Field(ge=1_024, le=1_048_576)] = 32_768
    max_headers: Annotated[int, Field(ge=8, le=1_000)] = 100
    # From a request's first byte to the end of its headers, and from there to the end of its
    # body (past either: 408 and the connection is closed).
    header_timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    body_timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0

    # --- Rate limits (fraudscore/edge/ratelimit.py) ------------------------------------------------
    # Per key, unless the key file gives the key its own; "off" for none.
    rate_limit: str | None = "2000/second"
    # Failed authentications per client address; past it the address gets 429, key or not.
    auth_failure_limit: str | None = "20/minute"
    # memory:// (each worker counts alone) or redis://host:port/db (exact across workers and tasks).
    rate_limit_storage: str = "memory://"
    # Proxies (addresses or CIDRs) whose X-Forwarded-For is believed, e.g. the VPC of the ALB.
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()

    # --- Overload (fraudscore/edge/admission.py) ---------------------------------------------------
    # A request that waited longer than the target for the event loop, while waits have stayed
    # above it for a whole interval, is answered 503 at once instead of being scored late.
    overload_target_ms: Annotated[float, Field(gt=0, le=1_000)] = 25.0
    overload_interval_ms: Annotated[float, Field(gt=0, le=10_000)] = 100.0

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
    # Who writes the decision log of a serving worker: "process", a child process per worker (the
    # worker only buffers and ships records once per 200 ms), or "thread", a thread in the worker
    # (it holds the worker's GIL while it writes; with SQLite it cost 19% of throughput, against 13%
    # from a process: README, "What the decision log records").
    decision_writer: Literal["process", "thread"] = "process"
    # Decisions (and their labels) older than this are deleted, a few thousand rows at a time.
    # 400 days: a year of history for retraining and year-on-year comparison, plus the time a
    # late chargeback label needs to find its decision.
    decision_retention_days: Annotated[int, Field(ge=1, le=10_000)] = 400
    # The sliding window of the quality figures (precision, recall, alert rate, label delay).
    quality_window_days: Annotated[int, Field(ge=1, le=3_650)] = 30
    # How often each worker refreshes the quality gauges (fraud_quality_*) from the store; 0: never.
    quality_refresh_s: Annotated[float, Field(ge=0, le=86_400)] = 300.0

    # --- Logs (fraudscore/ops/logs.py) ----------------------------------------------------------
    # "text" (BentoML's lines, for development) or "json" (one JSON object a line, with the
    # request id, key name, route, status and latency as fields; the container sets it).
    log_format: Literal["text", "json"] = "text"
    # The workers' event loop: "asyncio" (accepts every waiting connection at once) or "uvloop"
    # (one connection per turn of the loop: under overload, connections wait in the accept queue).
    event_loop: Literal["asyncio", "uvloop"] = "asyncio"

    # --- Alerts (fraudscore/alerts/; README, "Alerts and monitoring") ----------------------------
    # Alert on a verdict whose score is at least this (0-100); unset: on `block` verdicts only.
    alert_min_score: Annotated[int, Field(ge=0, le=100)] | None = None
    # Destinations. Both URLs are secrets (a Slack webhook URL is its own token): never logged.
    alert_slack_url: SecretStr | None = None
    alert_webhook_url: SecretStr | None = None
    # HMAC-SHA256 key of the webhook's X-Fraud-Signature; required (>= 32 characters) with a webhook.
    alert_secret: SecretStr | None = None
    # A link to the decision in the alert, e.g. https://console.example/decisions/{transaction_id}
    alert_link_template: str | None = None
    # Slack messages per minute per sender; past it, one digest a minute instead of a flood.
    alert_budget_per_minute: Annotated[int, Field(ge=1, le=10_000)] = 30
    # An alert not delivered within this age is dead-lettered: "24h", "90m", "3600s" or seconds.
    alert_max_age: timedelta = timedelta(hours=24)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.max_body_bytes is None:
            self.max_body_bytes = max(2 * 1024 * 1024, 2_048 * self.batch_max_items)
        if (isinstance(self.decision_threshold, int) and isinstance(self.review_threshold, int)
                and self.review_threshold > self.decision_threshold):
            raise ValueError("FRAUD_REVIEW_THRESHOLD must not exceed FRAUD_DECISION_THRESHOLD")
        if self.threshold_mode == "target-rate" and self.target_block_rate is None:
            raise ValueError("FRAUD_THRESHOLD_MODE=target-rate needs FRAUD_TARGET_BLOCK_RATE (e.g. 0.002)")
        if 0 < self.drift_window < 100:
            raise ValueError("FRAUD_DRIFT_WINDOW must be 0 (off) or at least 100 rows")
        self.rate_limit = check_rate(self.rate_limit, "FRAUD_RATE_LIMIT")
        self.auth_failure_limit = check_rate(self.auth_failure_limit, "FRAUD_AUTH_FAILURE_LIMIT")
        if not self.rate_limit_storage.startswith(("memory://", "redis://", "rediss://")):
            raise ValueError("FRAUD_RATE_LIMIT_STORAGE must be memory:// or redis://host:port[/db]")
        self._check_alerts()
        return self

    def alert_destinations(self) -> dict[str, str]:
        """The configured alert destinations, {"slack" | "webhook": URL}. The URLs are secrets."""
        found = {"slack": self.alert_slack_url, "webhook": self.alert_webhook_url}
        return {name: url.get_secret_value().strip() for name, url in found.items()
                if url is not None and url.get_secret_value().strip()}

    def _check_alerts(self) -> None:
        # fail closed: an alert setting that cannot work stops the start, it is never ignored
        destinations = self.alert_destinations()
        for name, url in destinations.items():
            parts = urlsplit(url)
            if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
                raise ValueError(f"FRAUD_ALERT_{name.upper()}_URL must be an http(s):// URL")
        secret = self.alert_secret.get_secret_value() if self.alert_secret else ""
        if "webhook" in destinations and len(secret) < MIN_ALERT_SECRET_LENGTH:
            raise ValueError(f"FRAUD_ALERT_WEBHOOK_URL needs FRAUD_ALERT_SECRET of at least "
                             f"{MIN_ALERT_SECRET_LENGTH} characters (the webhook is signed with it)")
        if destinations and not self.decision_log:
            raise ValueError("alert destinations need FRAUD_DECISION_LOG=true (alerts are written "
                             "with the decisions)")
        if self.alert_link_template:
            try:
                self.alert_link_template.format(transaction_id="x")
            except (KeyError, IndexError, ValueError):
                raise ValueError("FRAUD_ALERT_LINK_TEMPLATE may only use {transaction_id}") from None
        if self.alert_max_age <= timedelta(0):
            raise ValueError("FRAUD_ALERT_MAX_AGE must be positive")

    @field_validator("alert_max_age", mode="before")
    @classmethod
    def _duration(cls, v: object) -> object:
        if isinstance(v, str):
            m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", v.lower())
            if m is None:
                raise ValueError("a duration such as 24h, 90m, 3600s or 2d")
            return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2) or "s"])
        return v

    @field_validator("api_keys", "trusted_proxies", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        if isinstance(v, str):
            return tuple(k.strip() for k in v.split(",") if k.strip())
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for item in v:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"FRAUD_TRUSTED_PROXIES: {item!r} is not an address or a CIDR") from None
        return v

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
