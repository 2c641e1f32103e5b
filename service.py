"""The fraud-scoring BentoML service: HTTP edge only; the work lives in ``fraudscore``.

    BENTOML_CONFIG=configuration.yaml bentoml serve service:FraudScorer    # or: make serve

Request path: ApiKeyMiddleware (authenticate) -> RequestGuard (ready? JSON? size?) -> pydantic
schema (validate) -> ScoringPipeline (score, decide, metrics) -> response.
"""

from __future__ import annotations

import bentoml

from fraudscore import logs, routes
from fraudscore.auth import ApiKeyMiddleware
from fraudscore.edge import RequestGuard
from fraudscore.schemas import FraudScoreOut, TransactionIn, batch_request_model
from fraudscore.scoring import ScoringPipeline, check_configuration
from fraudscore.settings import ConfigError, get_settings

_settings = get_settings()  # decorator arguments below are fixed when the class is defined


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

    def __is_ready__(self) -> bool:
        return self.pipeline.ready

    @bentoml.api(route="/fraud_score")
    async def fraud_score(self, transaction: TransactionIn, /) -> FraudScoreOut:
        """Score one transaction: a 0-100 score, the probability, and approve / review / block."""
        (verdict,) = self.pipeline.scorer.score([transaction])
        return verdict

    @bentoml.api(route="/fraud_score/batch", input_spec=batch_request_model(_settings.batch_max_items),
                 batchable=_settings.adaptive_batching, max_batch_size=_settings.batch_max_items,
                 max_latency_ms=30_000)
    def fraud_score_batch(self, transactions: list[TransactionIn]) -> list[FraudScoreOut]:
        """Score many transactions, `{"transactions": [...]}` (up to FRAUD_BATCH_MAX_ITEMS); the
        answer is a list in input order, each item identical to scoring that transaction alone."""
        return self.pipeline.scorer.score(transactions)


logs.install(api.input_spec.__name__ for api in FraudScorer.apis.values())
# The first middleware added is the outermost: authenticate before anything else.
FraudScorer.add_asgi_middleware(ApiKeyMiddleware)
FraudScorer.add_asgi_middleware(
    RequestGuard,
    paths={api.route for api in FraudScorer.apis.values()} | {routes.LEGACY_PATH},
    unavailable_reason=lambda: _pipeline().unavailable_reason,
)
