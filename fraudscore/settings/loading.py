"""Building the settings from the environment (and FRAUD_ENV_FILE), once per process."""

from __future__ import annotations

import difflib
import os
from functools import lru_cache
from pathlib import Path

from pydantic import ValidationError

from .fields import ConfigError, Settings

# FRAUD_* names that clients and the developer commands read, not the service.
CLIENT_VARIABLES = frozenset({"FRAUD_API_KEY", "FRAUD_ENV_FILE"})


def env_file() -> Path | None:
    """The dotenv file settings are read from: FRAUD_ENV_FILE, default none."""
    name = os.environ.get("FRAUD_ENV_FILE", "")
    return Path(name) if name else None


def unknown_variables(environ: dict[str, str]) -> list[str]:
    """``FRAUD_*`` names in ``environ`` that are neither a setting nor a client variable."""
    known = {f"FRAUD_{name.upper()}" for name in Settings.model_fields} | CLIENT_VARIABLES
    return sorted(n for n in environ if n.upper().startswith("FRAUD_") and n.upper() not in known)


def load_settings() -> Settings:
    """Build the settings from the environment (and FRAUD_ENV_FILE); :class:`ConfigError` names
    every unknown ``FRAUD_*`` variable and every invalid value."""
    path = env_file()
    file_values: dict[str, str] = {}
    if path is not None:
        from dotenv import dotenv_values

        if not path.is_file():
            raise ConfigError(f"FRAUD_ENV_FILE={path}: no such file")
        file_values = {k: v or "" for k, v in dotenv_values(path).items()}
    unknown = unknown_variables({**file_values, **os.environ})
    if unknown:
        known = [f"FRAUD_{n.upper()}" for n in Settings.model_fields]
        hints = [f"{n} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(n.upper(), known, 1))
                 else n for n in unknown]
        raise ConfigError("unknown setting(s): " + ", ".join(hints))
    try:
        return Settings(_env_file=path)
    except ValidationError as exc:
        problems = "; ".join(f"{_variable(e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False))
        raise ConfigError(f"invalid settings: {problems}") from None


def _variable(loc: tuple) -> str:
    if not loc:
        return "settings"
    return "API_KEY" if loc[0] == "legacy_api_key" else f"FRAUD_{str(loc[0]).upper()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
