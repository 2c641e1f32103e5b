"""The fraud-scoring BentoML service: loads the pipeline and wires the edge; the work lives in
``fraudscore``.

    BENTOML_CONFIG=configuration.yaml bentoml serve service:FraudScorer    # or: make serve

Request path: HardenedProtocol (limits, timeouts; fraudscore/edge/protocol.py) -> BentoML's
timeout -> Edge (route table, authenticate, rate-limit, read, admit, fraudscore/edge/app.py) ->
handlers (validate, score, decide, respond; fraudscore/edge/handlers.py) -> ScoringPipeline
(fraudscore/scoring/pipeline.py) -> the scorer and model (fraudscore/scoring/); side effects
leave through the decision log's buffer (fraudscore/store/), written by a background thread.
"""

from __future__ import annotations

import gc

import bentoml

from fraudscore.alerts.runtime import Alerts
from fraudscore.edge import protocol, routes
from fraudscore.edge.app import Edge
from fraudscore.edge.keys import load_keys
from fraudscore.ops import bentoml_fixes, logs
from fraudscore.schemas import FraudScoreOut, TransactionIn, batch_request_model
from fraudscore.scoring.pipeline import ScoringPipeline, check_configuration
from fraudscore.settings import ConfigError, get_settings
from fraudscore.store.runtime import Store

try:
    _settings = get_settings()  # decorator arguments below are fixed when the class is defined
except ConfigError as exc:
    raise SystemExit(f"error: {exc}") from None
BatchRequestIn = batch_request_model(_settings.batch_max_items)


def _pipeline() -> ScoringPipeline:
    return bentoml.get_current_service().pipeline


def _store() -> Store:
    return bentoml.get_current_service().store


@bentoml.service(
    # Request metrics come from the edge, labelled by route template (BentoML's used raw paths).
    metrics={"enabled": False},
    # The scoring path is never traced (a span costs ~25% of its CPU even when nothing exports).
    tracing={"excluded_urls": routes.untraced_paths()},
)
class FraudScorer:
    """Real-time credit-card fraud scoring."""

    @bentoml.on_deployment
    def check_configuration() -> None:
        """Runs once in `bentoml serve`'s main process, before any worker: a bad setting stops
        the server here instead of making every worker fail and restart."""
        try:
            settings = get_settings()
            load_keys(settings)  # no key, or a malformed key file: refuse to start
            settings.resolved_store_url()  # a store URL of another kind
            check_configuration(settings)
        except ConfigError as exc:
            raise SystemExit(f"error: {exc}") from None

    def __init__(self) -> None:
        settings = get_settings()
        # its writer starts (and migrates) in the background; alerts, when configured, are written
        # with the decisions and sent by a background thread
        self.store = Store(settings, alerts=Alerts.from_settings(settings))
        self.pipeline = ScoringPipeline.load(settings, decision_log=self.store.decision_log)
        # What is alive now (modules, the model, the app) lives as long as the worker: keep it out
        # of every later full garbage collection, which then walks only what requests allocate.
        gc.collect()
        gc.freeze()
        # A 1,000-transaction request allocates thousands of objects that live until it is
        # answered; at the default threshold (700) the young generation is collected, and they
        # are walked, several times per request (5-10% of such a request's CPU, in-process).
        gc.set_threshold(20_000, 10, 10)

    def __is_ready__(self) -> bool:
        return self.pipeline.ready

    @bentoml.on_shutdown
    def close(self) -> None:
        """On SIGTERM too: the decisions still buffered are written before the worker exits."""
        self.pipeline.close()
        self.store.close()

    # Over HTTP the edge answers these routes (fraudscore/edge/handlers.py); the declarations give
    # BentoML's clients their schema (/schema.json), and the methods give the same answers to
    # in-process callers.
    @bentoml.api(route="/fraud_score")
    async def fraud_score(self, transaction: TransactionIn, /) -> FraudScoreOut:
        """Score one transaction: a 0-100 score, the probability, and approve / review / block."""
        (verdict,) = await self.pipeline.score_transactions([transaction])
        return FraudScoreOut(**verdict)

    @bentoml.api(route="/fraud_score/batch", input_spec=BatchRequestIn)
    async def fraud_score_batch(self, transactions: list[TransactionIn]) -> list[FraudScoreOut]:
        """Score many transactions, `{"transactions": [...]}` (up to FRAUD_BATCH_MAX_ITEMS); the
        answer is a list in input order, each item identical to scoring that transaction alone."""
        return [FraudScoreOut(**v) for v in await self.pipeline.score_transactions(transactions)]


logs.configure(_settings.log_format)  # BentoML has set up its handlers before it imports this
bentoml_fixes.install(_settings.event_loop)
protocol.install(_settings)
FraudScorer.add_asgi_middleware(Edge, pipeline=_pipeline, batch_model=BatchRequestIn, store=_store)
