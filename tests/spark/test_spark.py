"""Spark tier: a real local[2] Spark scores like the single-machine command, to the last bit.

Needs Java 17+ (`java` on PATH or JAVA_HOME; .ci/run installs it). Without Java the tier skips
on a developer machine and fails in CI (CI=true).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import bentoml
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fraudscore.features import FEATURES
from fraudscore.offline import score
from fraudscore.offline import spark as spark_job
from fraudscore.training.data import generate

pytestmark = pytest.mark.spark
ROOT = Path(__file__).resolve().parents[2]
ROWS = 300_000


def _java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    return str(Path(home) / "bin" / "java") if home else shutil.which("java")


@pytest.fixture(scope="module")
def spark():
    if _java() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Java is needed for the Spark tests (.ci/run installs openjdk-17-jre-headless)")
        pytest.skip("no Java on this machine: the Spark tier needs Java 17+")
    from pyspark.sql import SparkSession

    # Spark's Python workers must import fraudscore and use this interpreter
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (SparkSession.builder.master("local[2]").appName("fraudscore-tests")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
               .config("spark.driver.memory", "1g").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _input(path: Path, rows: int, seed: int) -> pa.Table:
    data = generate(rows, seed=seed)
    table = pa.table({"tx": np.arange(rows, dtype=np.int64),
                      **{f: data.X[:, j] for j, f in enumerate(FEATURES)}})
    pq.write_table(table, path, row_group_size=100_000)  # several files' worth of splits
    return table


def _single_machine(trained, src: Path, out: Path) -> pa.Table:
    assert score.main([str(src), "-o", str(out), "--id-column", "tx", "--model", trained.tag, "--quiet"]) == 0
    return pq.read_table(out)


def _equal(spark_dir: Path, single: pa.Table) -> None:
    got = pq.read_table(spark_dir).sort_by("tx")
    assert got.column_names == single.column_names
    assert got.num_rows == single.num_rows
    for name in single.column_names:
        assert got[name].to_pylist() == single[name].to_pylist(), name


def test_spark_scores_exactly_like_the_single_machine_command(spark, trained, tmp_path):
    _input(tmp_path / "in.parquet", ROWS, seed=5)
    single = _single_machine(trained, tmp_path / "in.parquet", tmp_path / "single.parquet")
    assert set(single["decision"].to_pylist()) >= {"approve", "block"}
    status = spark_job.main([str(tmp_path / "in.parquet"), str(tmp_path / "spark"), "--model", trained.tag,
                             "--id-column", "tx"], spark=spark)
    assert status == 0
    _equal(tmp_path / "spark", single)


def test_a_bad_value_fails_the_job_naming_the_row_and_column(spark, trained, tmp_path, capsys):
    table = _input(tmp_path / "in.parquet", 2_000, seed=6)
    v3 = table["V3"].to_numpy().copy()
    v3[1_234] = np.inf
    pq.write_table(table.set_column(FEATURES.index("V3") + 1, "V3", pa.array(v3)), tmp_path / "bad.parquet")
    status = spark_job.main([str(tmp_path / "bad.parquet"), str(tmp_path / "out"), "--model", trained.tag,
                             "--id-column", "tx"], spark=spark)
    assert status == 2
    assert "row with tx=1234, column V3: inf is not finite" in capsys.readouterr().err
    extra = tmp_path / "extra.parquet"
    pq.write_table(table.append_column("merchant", pa.array(["m"] * table.num_rows)), extra)
    assert spark_job.main([str(extra), str(tmp_path / "out2"), "--model", trained.tag], spark=spark) == 2
    assert "unexpected columns ['tx', 'merchant']; name them with --keep" in capsys.readouterr().err


def test_the_readmes_spark_submit_line_works(trained, tmp_path):
    if _java() is None:
        pytest.skip("no Java")
    _input(tmp_path / "in.parquet", 5_000, seed=7)
    single = _single_machine(trained, tmp_path / "in.parquet", tmp_path / "single.parquet")
    bentoml.models.export_model(trained.tag, str(tmp_path / "fraud_detector.bentomodel"))
    # what `zip -r fraudscore.zip fraudscore` makes
    with zipfile.ZipFile(tmp_path / "fraudscore.zip", "w") as zf:
        for path in (ROOT / "fraudscore").rglob("*.py"):
            zf.write(path, path.relative_to(ROOT))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BENTOML_HOME")}
    env["PYSPARK_PYTHON"] = sys.executable
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "spark-submit"), "--master", "local[2]",
         "--conf", "spark.ui.enabled=false",
         "--py-files", str(tmp_path / "fraudscore.zip"), str(ROOT / "fraudscore" / "offline" / "spark.py"),
         str(tmp_path / "in.parquet"), str(tmp_path / "spark"), "--id-column", "tx",
         "--model-file", str(tmp_path / "fraud_detector.bentomodel")],
        capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"with {trained.tag}" in done.stdout + done.stderr
    _equal(tmp_path / "spark", single)
