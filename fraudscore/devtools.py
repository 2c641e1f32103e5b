"""Helpers behind `make serve`: a development key in .env, and a model in the store.

    python -m fraudscore.devtools ensure-key     # writes .env with a random key if none is set
    python -m fraudscore.devtools has-model      # exit 0 if FRAUD_MODEL_TAG resolves in the store
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from .settings import ConfigError, get_settings

ENV_FILE = Path(".env")


def ensure_key() -> int:
    try:
        get_settings().resolved_api_keys()
        print("API key: configured (environment, .env or FRAUD_API_KEYS_FILE)")
        return 0
    except ConfigError:
        pass
    key = secrets.token_urlsafe(32)
    lines = ENV_FILE.read_text().splitlines() if ENV_FILE.exists() else []
    lines = [ln for ln in lines if not ln.startswith("FRAUD_API_KEYS=")]
    lines.append(f"FRAUD_API_KEYS={key}")
    ENV_FILE.write_text("\n".join(lines) + "\n")
    ENV_FILE.chmod(0o600)
    print(
        "No API key was configured: generated a development key into .env (git-ignored).\n"
        "Use it as:  export FRAUD_API_KEY=$(sed -n 's/^FRAUD_API_KEYS=//p' .env | cut -d, -f1)\n"
        '            curl -H "X-API-Key: $FRAUD_API_KEY" ...'
    )
    return 0


def has_model() -> int:
    import bentoml
    from bentoml.exceptions import NotFound

    tag = get_settings().model_tag
    try:
        bentoml.models.get(tag)
    except NotFound:
        print(f"no model {tag} in the store ({os.environ.get('BENTOML_HOME', '~/bentoml')})")
        return 1
    return 0


def main(argv: list[str]) -> int:
    commands = {"ensure-key": ensure_key, "has-model": has_model}
    if len(argv) != 1 or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
