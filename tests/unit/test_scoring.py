import numpy as np
import pytest

from fraudscore.features import FEATURES
from fraudscore.schemas import TransactionIn
from fraudscore.scoring import ModelUnavailable, ScoringPipeline, check_configuration
from fraudscore.settings import ConfigError, Settings
from tests.conftest import tx_body


def _settings(**kw) -> Settings:
    return Settings(_env_file=None, **kw)


def test_pipeline_scores_like_the_model_and_keeps_order(trained, stand_in):
    pipeline = ScoringPipeline.load(_settings(model_tag=trained.tag))
    assert pipeline.ready and pipeline.unavailable_reason is None
    rows = [TransactionIn(**tx_body(stand_in, i, transaction_id=str(i))) for i in range(50)]
    verdicts = pipeline.scorer.score(rows)
    assert [v.transaction_id for v in verdicts] == [str(i) for i in range(50)]
    proba = pipeline.scorer.forest.predict_proba(stand_in.X[:50])
    assert np.allclose([v.fraud_probability for v in verdicts], proba, atol=1e-6)
    assert [v.fraud_score for v in verdicts] == np.rint(proba * 100).astype(int).tolist()


def test_missing_model_leaves_the_pipeline_unready_with_a_reason():
    pipeline = ScoringPipeline.load(_settings(model_tag="fraud_detector:nosuchversion"))
    assert not pipeline.ready
    assert "not in the model store" in pipeline.unavailable_reason
    with pytest.raises(ModelUnavailable, match="not in the model store"):
        pipeline.scorer  # noqa: B018


def test_threshold_overrides(trained):
    static = ScoringPipeline.load(_settings(model_tag=trained.tag, decision_threshold=50)).scorer
    assert static.thresholds.block == 50
    assert static.thresholds.review == min(trained.thresholds.review, 50)
    assert static.model_info().thresholds_source == {"block": "FRAUD_DECISION_THRESHOLD", "review": "model"}
    low = ScoringPipeline.load(_settings(model_tag=trained.tag, decision_threshold=1)).scorer
    assert low.thresholds.block == 1 and low.thresholds.review == 1
    with pytest.raises(ValueError, match="must not exceed"):
        _settings(model_tag=trained.tag, decision_threshold=10, review_threshold=20)


def test_start_up_check_rejects_a_review_edge_above_the_learned_block(trained):
    too_high = _settings(model_tag=trained.tag, review_threshold=trained.thresholds.block + 1)
    with pytest.raises(ConfigError, match="review <= block"):
        check_configuration(too_high)
    check_configuration(_settings(model_tag=trained.tag))  # the defaults pass
    # a model that cannot be loaded is no start-up error: the service answers 503 instead
    check_configuration(_settings(model_tag="fraud_detector:nosuchversion", review_threshold=99))


def test_feature_order_is_the_schema_order():
    assert list(TransactionIn.model_fields)[: len(FEATURES)] == list(FEATURES)
