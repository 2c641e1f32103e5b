"""The fraud-scoring BentoML service: HTTP edge only; the work lives in ``fraudscore``.

    BENTOML_CONFIG=configuration.yaml bentoml serve service:FraudScorer    # or: make serve

Request path: ApiKeyMiddleware (authenticate, auth.py) -> ScoringEdge (receive, validate, score,
decide, respond, edge.py) -> ScoringPipeline (scoring.py) -> the model (model.py).
"""

from __future__ import annotations

import gc

import bentoml

from fraudscore.edge import info as routes
from fraudscore.edge.app import BATCH_PATH, SCORE_PATH, ScoringEdge
from fraudscore.edge.auth import ApiKeyMiddleware
from fraudscore.ops import bentoml_fixes
from fraudscore.schemas import FraudScoreOut, TransactionIn, batch_request_model
from fraudscore.scoring.pipeline import ScoringPipeline, check_configuration
from fraudscore.settings import ConfigError, get_settings

_settings = get_settings()  # decorator arguments below are fixed when the class is defined
BatchRequestIn = batch_request_model(_settings.batch_max_items)


def _pipeline() -> ScoringPipeline:
    return bentoml.get_current_service().pipeline


@bentoml.asgi_app(routes.build_app(_pipeline), path="/")
@bentoml.service
class FraudScorer:
    """Real-time credit-card fraud scoring."""

    @bentoml.on_deployment
    def check_configuration() -> None:
        """Runs once in `bentoml serve`'s main process, before any worker: a bad setting stops
        the server here instead of making every worker fail and restart."""
        try:
            check_configuration(get_settings())
        except ConfigError as exc:
            raise SystemExit(f"error: {exc}") from None

    def __init__(self) -> None:
        self.pipeline = ScoringPipeline.load(get_settings())
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
        self.pipeline.close()

    # Over HTTP, ScoringEdge answers these routes before BentoML's router (see fraudscore/edge/app.py);
    # the declarations give the OpenAPI schema and BentoML's clients, and the methods give the same
    # answers to in-process callers.
    @bentoml.api(route=SCORE_PATH)
    async def fraud_score(self, transaction: TransactionIn, /) -> FraudScoreOut:
        """Score one transaction: a 0-100 score, the probability, and approve / review / block."""
        (verdict,) = await self.pipeline.score_transactions([transaction])
        return FraudScoreOut(**verdict)

    @bentoml.api(route=BATCH_PATH, input_spec=BatchRequestIn)
    async def fraud_score_batch(self, transactions: list[TransactionIn]) -> list[FraudScoreOut]:
        """Score many transactions, `{"transactions": [...]}` (up to FRAUD_BATCH_MAX_ITEMS); the
        answer is a list in input order, each item identical to scoring that transaction alone."""
        return [FraudScoreOut(**v) for v in await self.pipeline.score_transactions(transactions)]


bentoml_fixes.install()
# The first middleware added is the outermost: authenticate before anything else.
FraudScorer.add_asgi_middleware(ApiKeyMiddleware)
FraudScorer.add_asgi_middleware(ScoringEdge, pipeline=_pipeline, batch_model=BatchRequestIn)
