"""A worker's store: one engine, the decision log's writer, and the read side for the HTTP API.

The queries are synchronous; the async wrappers here run them in a thread, so the event loop never
waits on the database, and turn a store that is down (or not yet migrated) into
:class:`StoreUnavailable`, which the edge answers 503.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..settings import Settings
from .batches import BatchHook
from .engine import create_store_engine, describe_error, redact
from .labels import add_labels
from .migrate import migrate
from .process import ProcessDecisionLog
from .quality_gauges import QualityGauges
from .queries import get_decision, list_decisions
from .writer import DecisionLog

log = logging.getLogger("bentoml.fraudscore.store")


def _first_worker() -> bool:
    """BentoML's worker 1, or a process outside BentoML's workers (tests, the CLI)."""
    import bentoml

    return bentoml.server_context.worker_index in (None, 1)


class StoreUnavailable(RuntimeError):
    """The decision store cannot answer now; the message says why (no secret in it)."""


class Alerting(Protocol):
    """What the store needs of the alerts (fraudscore/alerts/, which imports the store, not the
    reverse): a hook run in each batch's transaction, and a sender to start and stop."""

    on_batch: BatchHook
    # how another process builds the same hook: (module under fraudscore., function, arguments)
    hook_spec: tuple[str, str, list]

    def start(self, engine: Engine) -> None: ...
    def close(self, timeout: float = 10.0) -> None: ...
    def describe(self) -> str: ...


class Store:
    def __init__(self, settings: Settings, alerts: Alerting | None = None) -> None:
        url = settings.resolved_store_url()
        self.where = redact(url)
        self.engine = create_store_engine(url)
        self.decision_log: DecisionLog | ProcessDecisionLog | None = None
        self.alerts = alerts if settings.decision_log else None  # settings refuse that combination
        # the writer migrates the schema first (retrying while down)
        if settings.decision_log and settings.decision_writer == "thread":
            self.decision_log = DecisionLog(self.engine, buffer=settings.decision_buffer,
                                            retention_days=settings.decision_retention_days,
                                            on_batch=self.alerts.on_batch if self.alerts else None)
        else:  # the read API needs the schema now, not once a writer process has started
            threading.Thread(target=self._migrate, name="store-migrate", daemon=True).start()
            if settings.decision_log:
                self.decision_log = ProcessDecisionLog(
                    url, buffer=settings.decision_buffer, retention_days=settings.decision_retention_days,
                    on_batch=self.alerts.hook_spec if self.alerts else None)
        self.quality: QualityGauges | None = None
        if settings.quality_refresh_s > 0 and _first_worker():
            self.quality = QualityGauges(self.engine, settings.quality_window_days,
                                         settings.quality_refresh_s)
        if self.alerts is not None:  # the sender retries until the writer has migrated the schema
            self.alerts.start(self.engine)
        log.info("decision store: %s (decision log %s; alerts %s)", self.where,
                 "on" if self.decision_log else "off", self.alerts.describe() if self.alerts else "off")

    def _migrate(self) -> None:
        try:
            migrate(engine=self.engine)
        except Exception as exc:  # the read API answers 503 until the store is reachable
            log.warning("decision store not migrated (%s): %s", self.where, describe_error(exc))

    async def _call(self, fn, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, self.engine, *args, **kwargs)
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"decision store unavailable: {describe_error(exc)}") from None

    async def decision(self, transaction_id: str) -> dict[str, Any] | None:
        return await self._call(get_decision, transaction_id)

    async def decisions(self, **filters: Any) -> tuple[list[dict[str, Any]], str | None]:
        return await self._call(list_decisions, **filters)

    async def label(self, items: list[dict[str, Any]], now: datetime | None = None) -> list[dict[str, str]]:
        return await self._call(add_labels, items, now)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the alert sender (what it holds is handed back to the outbox), flush the decision
        log (SIGTERM and shutdown; its alerts reach the outbox with it), release the connections."""
        if self.alerts is not None:
            self.alerts.close(timeout)
        if self.quality is not None:
            self.quality.close()
        if self.decision_log is not None:
            report = self.decision_log.close(timeout)
            log.info("decision log closed: %d written, %d dropped", report.written, report.dropped)
        self.engine.dispose()
