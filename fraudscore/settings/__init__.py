"""One settings object, read from the environment, failing closed.

Every variable is prefixed ``FRAUD_`` except ``API_KEY``, which the FastAPI service this replaces
read and which is still honoured. No dotenv file is read unless ``FRAUD_ENV_FILE`` names one (the
developer commands, ``make serve``, set it to ``.env``): a ``bentoml serve`` started from any folder
never picks up a stray ``.env``. A ``FRAUD_*`` variable that is not a setting (a typo such as
``FRAUD_DECISION_TRESHOLD``) stops the start with a message naming it. ``get_settings()`` builds
the object once per process; tests call ``get_settings.cache_clear()`` after changing the
environment.
"""

from .fields import MIN_ALERT_SECRET_LENGTH, MIN_KEY_LENGTH, ConfigError, NoApiKey, Settings, check_rate
from .loading import CLIENT_VARIABLES, env_file, get_settings, load_settings, unknown_variables

__all__ = ["CLIENT_VARIABLES", "MIN_ALERT_SECRET_LENGTH", "MIN_KEY_LENGTH", "ConfigError", "NoApiKey",
           "Settings", "check_rate", "env_file", "get_settings", "load_settings", "unknown_variables"]
