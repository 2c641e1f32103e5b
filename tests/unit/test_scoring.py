import asyncio
import importlib.util

import numpy as np
import pytest

from fraudscore.schemas import FraudScoreOut, TransactionIn
from fraudscore.scoring.batching import MERGE_BELOW_ROWS
from fraudscore.scoring.pipeline import CHUNK_ROWS, ModelUnavailable, ScoringPipeline, check_configuration
from fraudscore.settings import ConfigError, Settings
from tests.conftest import tx_body


def _settings(**kw) -> Settings:
    return Settings(_env_file=None, **kw)


@pytest.mark.parametrize("engine", ["onnx", "sklearn"])
@pytest.mark.parametrize("batching", [False, True])
def test_pipeline_scores_like_the_model_and_keeps_order(trained, stand_in, engine, batching):
    pipeline = ScoringPipeline.load(_settings(model_tag=trained.tag, engine=engine,
                                              adaptive_batching=batching))
    assert pipeline.ready and pipeline.unavailable_reason is None
    assert pipeline.scorer.forest.engine == engine
    assert pipeline.scorer.model_info().adaptive_batching is batching
    rows = [TransactionIn(**tx_body(stand_in, i, transaction_id=str(i))) for i in range(50)]
    verdicts = asyncio.run(pipeline.score_transactions(rows))
    assert [v["transaction_id"] for v in verdicts] == [str(i) for i in range(50)]
    for v in verdicts:  # the edge sends these dicts as they are: they must be the declared schema
        assert FraudScoreOut.model_validate(v).model_dump(exclude_none=True) == v
    proba = _reference_forest(trained).predict_proba(stand_in.X[:50].astype(np.float32))[:, 1]
    assert np.allclose([v["fraud_probability"] for v in verdicts], proba, atol=1e-5)
    assert [v["fraud_score"] for v in verdicts] == np.rint(proba * 100).astype(int).tolist()
    block = pipeline.scorer.thresholds.block
    assert [v["decision"] for v in verdicts] == [pipeline.scorer.thresholds.decide(v["fraud_score"])
                                                 for v in verdicts]
    assert [v["is_fraud"] for v in verdicts] == [v["fraud_score"] >= block for v in verdicts]


def test_both_engines_give_the_same_probabilities(trained, stand_in):
    onnx = ScoringPipeline.load(_settings(model_tag=trained.tag, engine="onnx")).scorer.forest
    sklearn = ScoringPipeline.load(_settings(model_tag=trained.tag, engine="sklearn")).scorer.forest
    assert np.abs(onnx.predict_proba(stand_in.X[:500]) - sklearn.predict_proba(stand_in.X[:500])).max() < 1e-5


def _merges(pipeline: ScoringPipeline) -> list[int]:
    """The row counts of the model calls that go through adaptive batching, as they happen."""
    merged: list[int] = []
    batcher = pipeline._batcher

    async def recording(X):
        merged.append(len(X))
        return await batcher(X)

    pipeline._batcher = recording
    return merged


def test_only_small_calls_are_merged(trained, stand_in):
    pipeline = ScoringPipeline.load(_settings(model_tag=trained.tag, adaptive_batching=True))
    merged = _merges(pipeline)

    async def run() -> None:  # one event loop, as in a worker: the dispatcher binds to it
        for n in (1, MERGE_BELOW_ROWS - 1, MERGE_BELOW_ROWS, 500):
            rows = [TransactionIn(**tx_body(stand_in, i)) for i in range(n)]
            assert len(await pipeline.score_transactions(rows)) == n

    asyncio.run(run())
    assert merged == [1, MERGE_BELOW_ROWS - 1]  # big requests go straight to the model


def test_a_single_transaction_is_not_merged_while_a_large_request_holds_the_lane(trained, stand_in):
    """Merging waits a turn of the loop; with bulk work in the lane a turn holds a piece of it, so a
    single transaction is scored at once then (and merged again once the lane is free)."""
    pipeline = ScoringPipeline.load(_settings(model_tag=trained.tag, adaptive_batching=True))
    merged = _merges(pipeline)
    single = [TransactionIn(**tx_body(stand_in, 0))]
    large = [TransactionIn(**tx_body(stand_in, i)) for i in range(8 * CHUNK_ROWS)]

    async def run() -> list[int]:
        await pipeline.score_transactions(single)
        idle = list(merged)
        bulk = asyncio.create_task(pipeline.score_transactions(large))
        while not pipeline.bulk_lane().busy:
            await asyncio.sleep(0)
        (verdict,) = await pipeline.score_transactions(single)
        assert verdict["fraud_score"] >= 0
        during = merged[len(idle):]
        assert len(await bulk) == len(large)
        await pipeline.score_transactions(single)
        return [idle, during, merged[len(idle) + len(during):]]

    idle, during, after = asyncio.run(run())
    assert idle == [1] and during == [] and after == [1]


def test_sklearn_engine_without_its_libraries_refuses_to_start(trained, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "skops" else real(name, *a))
    with pytest.raises(ConfigError, match="FRAUD_ENGINE=sklearn needs"):
        check_configuration(_settings(model_tag=trained.tag, engine="sklearn"))


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


# creditcard.csv's header, written out here rather than taken from the package's FEATURES
REAL_FILE_COLUMNS = ("Time", *(f"V{i}" for i in range(1, 29)), "Amount")


def test_each_json_field_reaches_the_model_column_of_its_name_in_the_real_file(trained):
    pipeline = ScoringPipeline.load(_settings(model_tag=trained.tag, adaptive_batching=False))
    seen: list[np.ndarray] = []
    forest = pipeline.scorer.forest
    pipeline.scorer.forest = type("Recording", (), {"engine": "onnx", "predict_proba": staticmethod(
        lambda X: seen.append(X.copy()) or forest.predict_proba(X))})()
    row = np.arange(30) * 1.5 + 0.25  # a different value in every column
    fields = dict(zip(REAL_FILE_COLUMNS, row.tolist(), strict=True))
    shuffled = dict(sorted(fields.items(), key=lambda kv: hash(kv[0])))  # JSON key order is no order
    asyncio.run(pipeline.score_transactions([TransactionIn(**shuffled)]))
    assert seen[0].tolist() == [row.tolist()]


def _reference_forest(trained):
    """The trained forest read straight from its skops file: scikit-learn, not the ONNX path."""
    import skops.io as sio

    from fraudscore import artifact

    path = artifact.load(trained.tag).path / artifact.SKOPS_FILE
    return sio.load(path, trusted=["sklearn.tree._tree.Tree"])


def test_reasons_follow_the_top_k_setting_and_zero_turns_them_off(trained, stand_in):
    frauds = np.flatnonzero(stand_in.y == 1)[:20]
    X = stand_in.X[frauds]
    for k in (0, 2):
        scorer = ScoringPipeline.load(_settings(model_tag=trained.tag, reasons_top_k=k,
                                                decision_log=False)).scorer
        verdicts = scorer.verdicts(X, scorer.predict(X), [None] * len(X))
        flagged = [v for v in verdicts if v["decision"] != "approve"]
        assert flagged
        assert all(len(v.get("reasons") or []) == k for v in flagged)


def test_a_shadow_model_is_recorded_beside_the_primary_and_never_decides(trained, stand_in, tmp_path):
    """FRAUD_SHADOW_MODEL_TAG: the answer is the primary's; the store gets the shadow's verdict on
    the same transaction (role shadow, its own version); the shadow makes no decision, score or
    threshold series (the dashboard's thresholds in force and traffic by version stay the
    primary's)."""
    from sqlalchemy import select

    from fraudscore.edge.handlers import _collect_metrics
    from fraudscore.scoring.pipeline import Origin
    from fraudscore.store.engine import create_store_engine
    from fraudscore.store.runtime import Store
    from fraudscore.store.schema import decisions
    from fraudscore.training.data import generate
    from fraudscore.training.trainer import TrainConfig, train
    from tests.receiver import wait_for

    challenger = train(generate(20_000, seed=5), TrainConfig(n_estimators=6, n_jobs=1, seed=5),
                       progress=False, log=lambda *_: None).tag
    url = f"sqlite:///{tmp_path / 'store.db'}"
    settings = _settings(model_tag=trained.tag, shadow_model_tag=challenger, store_url=url,
                         decision_writer="thread")
    store = Store(settings)
    pipeline = ScoringPipeline.load(settings, decision_log=store.decision_log)
    rows = [TransactionIn(**tx_body(stand_in, i, transaction_id=f"s{i}")) for i in range(40)]
    try:
        async def serve() -> list[dict]:
            out = await pipeline.score_transactions(rows, origin=Origin("/fraud_score/batch", "k", "r", 0.0))
            await asyncio.sleep(0.3)  # a serving loop keeps running: the shadow scores off the request path
            return out

        verdicts = asyncio.run(serve())
        assert {v["model_version"] for v in verdicts} == {trained.tag}
        engine = create_store_engine(url)
        d = decisions.c

        def recorded() -> list:
            with engine.connect() as conn:
                return conn.execute(select(d.transaction_id, d.role, d.model_version, d.score)).all()

        assert wait_for(lambda: len(recorded()) == 80, 10)
        got = recorded()
        assert {(r.transaction_id, r.model_version) for r in got if r.role == "shadow"} == \
            {(f"s{i}", challenger) for i in range(40)}
        primary = {r.transaction_id: r.score for r in got if r.role == "primary"}
        assert primary == {v["transaction_id"]: v["fraud_score"] for v in verdicts}
        engine.dispose()
        text = _collect_metrics().decode()
        assert f'model_version="{trained.tag}"' in text
        counted = ("fraud_decisions_total", "fraud_block_threshold", "fraud_review_threshold", "fraud_scores")
        assert not [line for line in text.splitlines() if challenger in line and line.startswith(counted)]
    finally:
        pipeline.close()
        store.close()
