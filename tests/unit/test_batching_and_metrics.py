"""Adaptive batching merges concurrent model calls without mixing up rows; bulk histogram updates
equal one-by-one observations; the skops loader refuses types it does not know."""

import asyncio
import io
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from fraudscore.ops.metrics import observe_many
from fraudscore.scoring.batching import ModelBatcher
from fraudscore.scoring.model import SklearnForest


def test_concurrent_calls_are_merged_and_each_gets_its_own_rows():
    calls: list[int] = []

    def predict(X: np.ndarray) -> np.ndarray:
        calls.append(len(X))
        time.sleep(0.002)  # a model call long enough for requests to queue behind it
        return X[:, 0] * 2.0

    async def run() -> list[np.ndarray]:
        batcher = ModelBatcher(predict, max_rows=64)
        inputs = [np.full((1 + i % 5, 30), float(i)) for i in range(120)]
        outs = await asyncio.gather(*(batcher(X) for X in inputs))
        for X, out in zip(inputs, outs, strict=True):
            assert np.array_equal(out, X[:, 0] * 2.0)  # its own rows, in order
        return inputs

    inputs = asyncio.run(run())
    assert sum(calls) == sum(len(X) for X in inputs)
    assert max(calls) > 5, calls  # rows of several requests went through one call
    assert max(calls) <= 64  # never above the cap
    assert len(calls) < len(inputs)


def test_a_model_error_reaches_every_caller_of_the_merged_call():
    def predict(X):
        raise ValueError("model exploded")

    async def run():
        batcher = ModelBatcher(predict, max_rows=10)
        return await asyncio.gather(*(batcher(np.zeros((1, 30))) for _ in range(3)), return_exceptions=True)

    assert all(isinstance(r, ValueError) for r in asyncio.run(run()))


def test_observe_many_equals_observing_one_by_one():
    values = np.array([0, 1, 1, 2, 3, 7, 10, 11, 50, 99, 100, 100, 250])
    one, many = CollectorRegistry(), CollectorRegistry()
    buckets = (1, 2, 5, 10, 20, 50, 100)
    h1 = Histogram("h", "x", buckets=buckets, registry=one)
    h2 = Histogram("h", "x", buckets=buckets, registry=many)
    for v in values:
        h1.observe(float(v))
    observe_many(h2, values)
    samples = lambda reg: sorted((s.name, tuple(s.labels.items()), s.value)  # noqa: E731
                                 for m in reg.collect() for s in m.samples if not s.name.endswith("_created"))
    assert samples(one) == samples(many)


def _skops(obj) -> bytes:
    import skops.io as sio

    buf = io.BytesIO()
    sio.dump(obj, buf)
    return buf.getvalue()


def test_skops_loader_refuses_unknown_types_and_other_models():
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.tree import DecisionTreeClassifier

    # a callable inside the file is how a skops payload would run code: refused before it is built
    with pytest.raises(ValueError, match="types this service does not load"):
        SklearnForest(_skops(FunctionTransformer(func=print)))
    rng = np.random.default_rng(0)
    tree = DecisionTreeClassifier().fit(rng.normal(size=(20, 30)), np.arange(20) % 2)
    with pytest.raises(ValueError, match="RandomForestClassifier"):
        SklearnForest(_skops(tree))


def test_a_cancelled_queued_call_is_cancelled_not_overloaded():
    async def run():
        batcher = ModelBatcher(lambda X: X[:, 0], max_rows=10)
        task = asyncio.create_task(batcher(np.zeros((1, 30))))
        await asyncio.sleep(0)  # queued, not yet dispatched
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await batcher(np.ones((2, 30)))).tolist() == [1.0, 1.0]  # the batcher still works
        batcher.close()

    asyncio.run(run())


def test_a_batcher_serves_callers_on_a_new_event_loop():
    batcher = ModelBatcher(lambda X: X[:, 0] + 1, max_rows=10)
    for _ in range(2):  # a CorkDispatcher is bound to one loop: the batcher makes one per loop
        assert asyncio.run(batcher(np.zeros((1, 30)))).tolist() == [1.0]
    batcher.close()


def test_a_closed_batcher_serves_again_on_the_next_call():
    async def run():
        batcher = ModelBatcher(lambda X: X[:, 0] + 2, max_rows=10)
        assert (await batcher(np.zeros((1, 30)))).tolist() == [2.0]
        batcher.close()
        assert (await asyncio.wait_for(batcher(np.zeros((1, 30))), 5)).tolist() == [2.0]
        batcher.close()

    asyncio.run(run())
