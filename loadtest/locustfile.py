"""Locust traffic for the release gate: realistic, varied transactions on every scoring route.

    make loadtest                                  # starts the service, runs the gate (see gate.py)
    FRAUD_API_KEY=<key> .venv/bin/locust -f loadtest/locustfile.py --host http://127.0.0.1:3000 \\
        --headless -u 40 -r 20 -t 60s              # against a running service, plain Locust

Transactions come from the stand-in generator (fraudscore/training/data.py), drawn once at start: 4,000
different ones, 5% of them fraud-like, each sent with a transaction id. Each simulated client
sends 25 requests/s: 80% ``/fraud_score``, 15% ``/v1/fraud-score`` (the old FastAPI clients),
5% ``/fraud_score/batch`` with 100 transactions. A non-200 answer, or a 200 whose body is not a
verdict, counts as a failure. The key comes from FRAUD_API_KEY.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

from locust import FastHttpUser, constant_throughput, events, task

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fraudscore.features import FEATURES  # noqa: E402
from fraudscore.training.data import generate  # noqa: E402

SINGLES: list[bytes] = []
BATCHES: list[bytes] = []
NATIVE_KEYS = {"fraud_score", "fraud_probability", "is_fraud", "decision", "threshold", "model_version"}
LEGACY_KEYS = {"fraud-score", "is-fraud", "model-version"}


@events.init.add_listener
def _load_transactions(environment, **_) -> None:
    data = generate(40_000, seed=int(os.environ.get("LOADTEST_SEED", "2026")))
    frauds = [i for i in range(len(data.y)) if data.y[i] == 1]
    legit = [i for i in range(len(data.y)) if data.y[i] == 0]
    rng = random.Random(7)
    picked = [rng.choice(frauds) for _ in range(200)] + rng.sample(legit, 3_800)
    rng.shuffle(picked)
    txs = [{f: float(v) for f, v in zip(FEATURES, data.X[i], strict=True)} | {"transaction_id": f"lt-{n}"}
           for n, i in enumerate(picked)]
    SINGLES[:] = [json.dumps(tx).encode() for tx in txs]
    BATCHES[:] = [json.dumps({"transactions": txs[k:k + 100]}).encode() for k in range(0, len(txs), 100)]


class PaymentsClient(FastHttpUser):
    wait_time = constant_throughput(25)

    def on_start(self) -> None:
        key = os.environ.get("FRAUD_API_KEY")
        if not key:
            raise SystemExit("set FRAUD_API_KEY to a key the service accepts")
        self.headers = {"X-API-Key": key, "Content-Type": "application/json"}

    def _post(self, path: str, body: bytes, check) -> None:
        with self.client.post(path, data=body, headers=self.headers, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}: {r.text[:200]}")
            elif not check(r.json()):
                r.failure(f"not a verdict: {r.text[:200]}")

    @task(16)
    def score_one(self) -> None:
        self._post("/fraud_score", random.choice(SINGLES), lambda v: set(v) >= NATIVE_KEYS)

    @task(3)
    def score_one_legacy(self) -> None:
        self._post("/v1/fraud-score", random.choice(SINGLES), lambda v: set(v) == LEGACY_KEYS)

    @task(1)
    def score_batch(self) -> None:
        self._post("/fraud_score/batch", random.choice(BATCHES),
                   lambda v: len(v) == 100 and all(set(x) >= NATIVE_KEYS for x in v))
