"""Helpers behind `make serve`: a development key in the env file, and a model in the store.

    python -m fraudscore.devtools ensure-key     # writes a random key if none is configured
    python -m fraudscore.devtools has-model      # exit 0 if FRAUD_MODEL_TAG resolves in the store
"""

from __future__ import annotations

import os
import secrets
import sys

from .settings import ConfigError, NoApiKey, env_file, get_settings


def ensure_key() -> int:
    """Generate a key only when none is configured anywhere; never replace the user's own."""
    try:
        get_settings().resolved_api_keys()
        print("API key: configured (environment, env file or FRAUD_API_KEYS_FILE)")
        return 0
    except NoApiKey:
        pass
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    path = env_file()
    if path is None:
        print("error: no API key configured and FRAUD_ENV_FILE is empty", file=sys.stderr)
        return 1
    lines = path.read_text().splitlines() if path.exists() else []
    lines = [ln for ln in lines if not ln.startswith("FRAUD_API_KEYS=")]
    lines.append(f"FRAUD_API_KEYS={secrets.token_urlsafe(32)}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never world-readable
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    print(
        f"No API key was configured: generated a development key into {path} (git-ignored).\n"
        f"Use it as:  export FRAUD_API_KEY=$(sed -n 's/^FRAUD_API_KEYS=//p' {path} | cut -d, -f1)\n"
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
