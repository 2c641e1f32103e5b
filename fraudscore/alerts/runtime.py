"""The alert wiring of one process (service.py builds it; store/runtime.py runs it)."""

from __future__ import annotations

from sqlalchemy import Engine

from ..settings import Settings
from .outbox import outbox_hook
from .sender import AlertSender, SenderConfig


class Alerts:
    """The alert wiring of one process: ``on_batch`` for the decision log, and the sender."""

    def __init__(self, config: SenderConfig, min_score: int | None) -> None:
        self.config = config
        self.on_batch = outbox_hook(tuple(config.urls), min_score)
        # the same hook, built in the decision log's writer process (store/process.py)
        self.hook_spec = ("fraudscore.alerts.outbox", "outbox_hook", [list(config.urls), min_score])
        self.sender: AlertSender | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Alerts | None:
        """None when no destination is configured (no rows are written, no sender runs)."""
        urls = settings.alert_destinations()
        if not urls:
            return None
        secret = settings.alert_secret.get_secret_value() if settings.alert_secret else None
        return cls(SenderConfig(urls=urls, secret=secret, link_template=settings.alert_link_template,
                                budget_per_minute=settings.alert_budget_per_minute,
                                max_age=settings.alert_max_age), settings.alert_min_score)

    def start(self, engine: Engine) -> None:
        self.sender = AlertSender(engine, self.config).start()

    def close(self, timeout: float = 10.0) -> None:
        if self.sender is not None:
            self.sender.close(timeout)

    def describe(self) -> str:
        """The destinations' names (never their URLs)."""
        return ", ".join(self.config.urls)
