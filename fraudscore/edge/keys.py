"""API keys: who may call, with which scopes and at what rate; reloaded when their file changes.

Keys come from three places, all valid at once (rotation: add the new key, deploy, drop the old):
- ``FRAUD_API_KEYS`` (comma-separated) and the old service's ``API_KEY``: scope ``score`` only;
- ``FRAUD_API_KEYS_FILE``: a ``*.toml`` file of named keys, each with its scopes and rate limit
  (below), or any other file with one key per line (scope ``score``; ``#`` starts a comment).

    [keys.checkout]                      # the key's name: in logs and the decision log
    sha256 = "9f86d08...a08"             # hex SHA-256 of the key (the file then holds no key),
                                         # or: key = "the key itself"
    scopes = ["score"]                   # any of score, read, label; default ["score"]
    rate_limit = "500/second"            # default FRAUD_RATE_LIMIT; "off" for none
    block_threshold = 80                 # optional, both or neither: this key's own thresholds
    review_threshold = 60                # (scores 1-100, review <= block; equal: no review band)

A key with its own thresholds (a merchant's risk appetite) gets its verdicts decided by them, in
every mode (target-rate moves only the service's thresholds); /model_info shows them to it.

A key is never logged or stored: only its name. Presented keys are looked up by their SHA-256
digest, so the time a lookup takes depends on the digest, which a caller cannot choose.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..scoring.thresholds import Thresholds
from ..settings import MIN_KEY_LENGTH, ConfigError, NoApiKey, Settings, check_rate

SCOPES = ("score", "read", "label")
RELOAD_CHECK_S = 1.0
_FIELDS = {"key", "sha256", "scopes", "rate_limit", "block_threshold", "review_threshold"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

log = logging.getLogger("bentoml.fraudscore")


@dataclass(frozen=True)
class ApiKey:
    name: str
    scopes: frozenset[str]
    # None: FRAUD_RATE_LIMIT applies; "off": no limit; else a rate such as "500/second"
    rate_limit: str | None = None
    # the key's own block and review thresholds (key file); None: the service's
    thresholds: Thresholds | None = None


class KeyRing:
    """The keys in force: ``find(presented)`` -> the :class:`ApiKey`, or None."""

    def __init__(self, entries: Iterable[tuple[bytes, ApiKey]]) -> None:
        self._by_digest: dict[bytes, ApiKey] = {}
        for digest, key in entries:
            other = self._by_digest.setdefault(digest, key)
            if other is not key:
                raise ConfigError(f"the keys {other.name!r} and {key.name!r} are the same key")
        if not self._by_digest:
            raise NoApiKey("no API key configured: set FRAUD_API_KEYS (comma-separated), API_KEY or "
                           "FRAUD_API_KEYS_FILE; the service refuses to start without one")

    def find(self, presented: bytes) -> ApiKey | None:
        return self._by_digest.get(hashlib.sha256(presented).digest())

    def __len__(self) -> int:
        return len(self._by_digest)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _env_entries(settings: Settings) -> list[tuple[bytes, ApiKey]]:
    entries = []
    for secret in settings.api_keys:
        key = secret.get_secret_value().strip()
        if len(key) < MIN_KEY_LENGTH:
            raise ConfigError(f"every API key must be at least {MIN_KEY_LENGTH} characters long")
        entries.append((_digest(key), ApiKey(f"env-{_digest(key).hex()[:8]}", frozenset({"score"}))))
    if settings.legacy_api_key is not None and (key := settings.legacy_api_key.get_secret_value().strip()):
        if len(key) < MIN_KEY_LENGTH and not settings.allow_short_legacy_key:
            raise ConfigError(f"API_KEY is shorter than {MIN_KEY_LENGTH} characters: use a longer key, or "
                              "set FRAUD_ALLOW_SHORT_LEGACY_KEY=true to accept it during a migration")
        entries.append((_digest(key), ApiKey("legacy", frozenset({"score"}))))
    return entries


def parse_key_file(path: Path, text: str) -> list[tuple[bytes, ApiKey]]:
    """The entries of a key file; :class:`ConfigError` names the file and the problem."""
    if path.suffix != ".toml":
        entries = []
        for n, line in enumerate(text.splitlines(), start=1):
            key = line.strip()  # an indented "# comment" is still a comment
            if not key or key.startswith("#"):
                continue
            if len(key) < MIN_KEY_LENGTH:
                raise ConfigError(f"{path} line {n}: keys must be at least {MIN_KEY_LENGTH} characters long")
            entries.append((_digest(key), ApiKey(f"file-{_digest(key).hex()[:8]}", frozenset({"score"}))))
        return entries
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if set(doc) - {"keys"} or not isinstance(doc.get("keys"), dict):
        raise ConfigError(f"{path}: expected only [keys.<name>] tables")
    return [_toml_entry(path, name, spec) for name, spec in doc["keys"].items()]


def _toml_entry(path: Path, name: str, spec: object) -> tuple[bytes, ApiKey]:
    where = f"{path} [keys.{name}]"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: must be a table")
    if not _NAME.match(name):
        raise ConfigError(f"{where}: a name is 1-64 letters, digits, '_', '.' or '-'")
    if unknown := set(spec) - _FIELDS:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_FIELDS)}")
    if ("key" in spec) == ("sha256" in spec):
        raise ConfigError(f"{where}: give exactly one of key or sha256")
    if "key" in spec:
        if not isinstance(spec["key"], str) or len(spec["key"].strip()) < MIN_KEY_LENGTH:
            raise ConfigError(f"{where}: key must be a string of at least {MIN_KEY_LENGTH} characters")
        digest = _digest(spec["key"].strip())
    else:
        value = spec["sha256"]
        if not isinstance(value, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", value.strip()):
            raise ConfigError(f"{where}: sha256 must be 64 hexadecimal digits")
        digest = bytes.fromhex(value.strip())
    scopes = spec.get("scopes", ["score"])
    if not isinstance(scopes, list) or not scopes or not set(scopes) <= set(SCOPES):
        raise ConfigError(f"{where}: scopes must be a non-empty list of {', '.join(SCOPES)}")
    limit = spec.get("rate_limit")
    if limit is not None:
        try:
            limit = check_rate(str(limit), "rate_limit") or "off"
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return digest, ApiKey(name, frozenset(scopes), limit, _thresholds(where, spec))


def _thresholds(where: str, spec: dict) -> Thresholds | None:
    given = [f for f in ("block_threshold", "review_threshold") if f in spec]
    if not given:
        return None
    if len(given) == 1:
        raise ConfigError(f"{where}: give both block_threshold and review_threshold, or neither")
    block, review = spec["block_threshold"], spec["review_threshold"]
    for field, value in (("block_threshold", block), ("review_threshold", review)):
        if type(value) is not int or not 1 <= value <= 100:
            raise ConfigError(f"{where}: {field} must be an integer score 1-100, got {value!r}")
    if review > block:
        raise ConfigError(f"{where}: review_threshold ({review}) must not exceed block_threshold ({block})")
    return Thresholds(block=block, review=review)


def load_keys(settings: Settings) -> KeyRing:
    """Every configured key; :class:`NoApiKey` when there is none, :class:`ConfigError` when one
    is weak or malformed or the key file cannot be read."""
    entries = _env_entries(settings)
    if settings.api_keys_file is not None:
        entries += parse_key_file(settings.api_keys_file, _read(settings.api_keys_file))
    return KeyRing(entries)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"FRAUD_API_KEYS_FILE {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"FRAUD_API_KEYS_FILE {path}: not a UTF-8 text file") from None


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)  # follows the symlink that mounted secrets are swapped behind
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class KeySource:
    """The key ring in force, re-read when FRAUD_API_KEYS_FILE changes (checked at most once a
    second, when a request needs a key). A file that no longer parses keeps the previous keys and
    logs one ERROR per change: a typo must not lock every caller out."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._path = settings.api_keys_file
        self._stamp = _stamp(self._path) if self._path else None
        self.ring = load_keys(settings)
        self._next_check = time.monotonic() + RELOAD_CHECK_S

    def current(self) -> KeyRing:
        if self._path is not None and (now := time.monotonic()) >= self._next_check:
            self._next_check = now + RELOAD_CHECK_S
            stamp = _stamp(self._path)
            if stamp is not None and stamp != self._stamp:
                self._stamp = stamp
                self._reload()
        return self.ring

    def _reload(self) -> None:
        from ..ops import metrics

        try:
            ring = load_keys(self._settings)
        except ConfigError as exc:
            metrics.KEY_RELOADS.labels(outcome="error").inc()
            log.error("API keys NOT reloaded (the previous %d stay in force): %s", len(self.ring), exc)
            return
        metrics.KEY_RELOADS.labels(outcome="ok").inc()
        log.info("API keys reloaded from %s: %d key(s) in force", self._path, len(ring))
        self.ring = ring
