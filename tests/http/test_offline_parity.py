"""The offline command answers what the service answers, row for row."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fraudscore.features import FEATURES
from fraudscore.offline import score
from tests.conftest import tx_body

FIELDS = ("fraud_score", "fraud_probability", "is_fraud", "decision", "threshold", "model_version")


def test_score_command_equals_fraud_score_for_every_row(client, auth, stand_in, trained, tmp_path):
    # every fraud of the stand-in plus 2,000 other rows: all three decisions, many probabilities
    idx = np.concatenate([np.flatnonzero(stand_in.y), np.arange(0, 20_000, 10)])
    features = {f: stand_in.X[idx, j] for j, f in enumerate(FEATURES)}
    table = pa.table({"tx": [f"t{i}" for i in idx], **features})
    pq.write_table(table, tmp_path / "in.parquet")
    assert score.main([str(tmp_path / "in.parquet"), "-o", str(tmp_path / "out.parquet"), "--id-column", "tx",
                       "--model", trained.tag, "--chunk-rows", "500", "--quiet"]) == 0
    offline = pq.read_table(tmp_path / "out.parquet").to_pylist()

    served = []
    for start in range(0, len(idx), 1_000):
        rows = [tx_body(stand_in, int(i), transaction_id=f"t{i}") for i in idx[start:start + 1_000]]
        r = client.post("/fraud_score/batch", json={"transactions": rows}, headers=auth)
        assert r.status_code == 200
        served += r.json()
    assert len(served) == len(offline)
    for got, want in zip(offline, served, strict=True):
        assert got["tx"] == want["transaction_id"]
        assert {k: got[k] for k in FIELDS} == {k: want[k] for k in FIELDS}
    assert {v["decision"] for v in served} >= {"approve", "block"}
    for i in (0, 7, len(idx) - 1):  # and single transactions, the route the issue names
        single = client.post("/fraud_score", json=tx_body(stand_in, int(idx[i])), headers=auth).json()
        assert {k: offline[i][k] for k in FIELDS} == {k: single[k] for k in FIELDS}
