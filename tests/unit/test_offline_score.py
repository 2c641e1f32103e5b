"""``python -m fraudscore score``: formats, columns, chunking, refusals, atomic output, memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from fraudscore.features import FEATURES
from fraudscore.offline import score
from fraudscore.offline.engine import VERDICT_COLUMNS, round6
from fraudscore.offline.sources import open_source

ROOT = Path(__file__).resolve().parents[2]


def _table(dataset, rows: int, start: int = 0, **extra) -> pa.Table:
    cols = {f: dataset.X[start:start + rows, j] for j, f in enumerate(FEATURES)}
    return pa.table({**cols, **extra})


@pytest.fixture(scope="module")
def sample(stand_in) -> pa.Table:
    """3,000 stand-in rows with every fraud of the set among them, an id and the label."""
    idx = np.concatenate([np.arange(2_900), np.flatnonzero(stand_in.y)[:100]])
    return pa.table({"tx": [f"t{i}" for i in idx], **{f: stand_in.X[idx, j] for j, f in enumerate(FEATURES)},
                     "Class": stand_in.y[idx]})


def _run(trained, *args: str) -> int:
    return score.main([*args, "--model", trained.tag, "--quiet"])


def _read(path: Path) -> pa.Table:
    if path.suffix == ".csv":
        return pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(column_types={"tx": pa.string()}))
    return pq.read_table(path)


def test_parquet_and_csv_in_and_out_give_the_same_verdicts(trained, sample, tmp_path):
    pq.write_table(sample, tmp_path / "in.parquet")
    pcsv.write_csv(sample, tmp_path / "in.csv")
    outs = {}
    for src in ("parquet", "csv"):
        for dst in ("parquet", "csv"):
            out = tmp_path / f"{src}-out.{dst}"
            args = [str(tmp_path / f"in.{src}"), "-o", str(out), "--keep", "tx", "--keep", "Class"]
            assert _run(trained, *args) == 0
            outs[src, dst] = _read(out)
    first = outs["parquet", "parquet"]
    assert first.column_names == sample.column_names + list(VERDICT_COLUMNS)  # input columns, in order
    assert first.num_rows == sample.num_rows
    for table in outs.values():
        for name in ("tx", *FEATURES, *VERDICT_COLUMNS):
            assert table[name].to_pylist() == first[name].to_pylist(), name
    assert set(first["decision"].to_pylist()) >= {"approve", "block"}
    assert first["model_version"].to_pylist() == [trained.tag] * sample.num_rows
    assert first["threshold"].to_pylist() == [trained.thresholds.block] * sample.num_rows


def test_id_column_output_holds_the_id_and_the_verdicts(trained, sample, tmp_path):
    pq.write_table(sample.drop_columns(["Class"]), tmp_path / "in.parquet")
    args = [str(tmp_path / "in.parquet"), "-o", str(tmp_path / "out.parquet"), "--id-column", "tx"]
    assert _run(trained, *args) == 0
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.column_names == ["tx", *VERDICT_COLUMNS]
    assert out["tx"].to_pylist() == sample["tx"].to_pylist()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_tiny_chunks_and_many_workers_give_what_one_chunk_gives(trained, sample, tmp_path, fmt):
    src = tmp_path / f"in.{fmt}"
    (pq.write_table if fmt == "parquet" else pcsv.write_csv)(sample, src)
    one, tiny = tmp_path / "one.parquet", tmp_path / "tiny.parquet"
    common = [str(src), "--keep", "tx", "--keep", "Class"]
    assert _run(trained, *common, "-o", str(one), "--chunk-rows", "100000", "--workers", "1") == 0
    assert _run(trained, *common, "-o", str(tiny), "--chunk-rows", "7", "--workers", "3") == 0
    assert pq.read_table(one).equals(pq.read_table(tiny))


def test_reads_are_bounded_by_the_chunk_size(stand_in, tmp_path):
    pq.write_table(_table(stand_in, 5_000), tmp_path / "in.parquet", row_group_size=2_000)
    pcsv.write_csv(_table(stand_in, 5_000), tmp_path / "in.csv")
    for fmt in ("parquet", "csv"):
        sizes = [len(c.features[0]) for c in open_source(tmp_path / f"in.{fmt}", fmt, 300).chunks()]
        assert max(sizes) <= 300 and sum(sizes) == 5_000, fmt


def test_peak_arrow_memory_stays_far_below_the_file(trained, stand_in, tmp_path):
    # 100,000 rows are 24 MB of features; chunks of 1,000 rows hold ~0.25 MB each.
    pq.write_table(_table(stand_in, 20_000), tmp_path / "in.parquet", use_dictionary=False)
    big = pa.concat_tables([pq.read_table(tmp_path / "in.parquet")] * 5)
    pq.write_table(big, tmp_path / "big.parquet", use_dictionary=False)
    code = ("import sys, pyarrow as pa\nfrom fraudscore.offline.score import main\n"
            "assert main(sys.argv[1:]) == 0\nprint(pa.default_memory_pool().max_memory())")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "big.parquet"), "-o",
                           str(tmp_path / "out.parquet"), "--chunk-rows", "1000", "--model", trained.tag,
                           "--quiet"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    peak = int(done.stdout.split()[-1])
    assert peak < 24_000_000 / 4, f"Arrow peaked at {peak:,} bytes"


def _bad_csv(sample: pa.Table, tmp_path: Path, line: int, column: str, text: str) -> Path:
    """``sample`` as CSV (features only) with the cell of ``column`` on ``line`` replaced."""
    path = tmp_path / "bad.csv"
    pcsv.write_csv(sample.select(list(FEATURES)), path)
    lines = path.read_text().split("\n")
    cells = lines[line - 1].split(",")
    cells[FEATURES.index(column)] = text
    lines[line - 1] = ",".join(cells)
    path.write_text("\n".join(lines))
    return path


@pytest.mark.parametrize(("column", "text", "message"), [
    ("V3", "abc", "line 1500, column V3: 'abc' is not a number"),
    ("V3", "true", "line 1500, column V3: 'true' is not a number"),
    ("V7", "nan", "line 1500, column V7: nan is not finite"),
    ("V7", "-inf", "line 1500, column V7: -inf is not finite"),
    ("V28", "1e39", "line 1500, column V28: 1e+39 is outside float32 range"),
    ("Amount", "-0.5", "line 1500, column Amount: -0.5 is negative"),
    ("Time", "", "line 1500, column Time: missing value"),
])
def test_bad_csv_values_are_refused_with_line_and_column(trained, sample, tmp_path, capsys, column, text,
                                                         message):
    path = _bad_csv(sample, tmp_path, 1500, column, text)
    out = tmp_path / "out.parquet"
    assert _run(trained, str(path), "-o", str(out), "--chunk-rows", "256") == 2
    assert f"error: {path}, {message}" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]  # no output, no partial file


def _write(tmp_path: Path, name: str, content: bytes | pa.Table) -> Path:
    path = tmp_path / name
    if isinstance(content, pa.Table):
        (pq.write_table if name.endswith(".parquet") else pcsv.write_csv)(content, path)
    else:
        path.write_bytes(content)
    return path


def test_bad_files_are_refused_naming_the_problem(trained, sample, tmp_path, capsys):
    feats = sample.select(list(FEATURES))
    amount = feats["Amount"].to_pylist()
    amount[41] = None
    with_null = feats.set_column(FEATURES.index("Amount"), "Amount", pa.array(amount))
    v5 = feats["V5"].to_numpy().copy()
    v5[1234] = np.inf
    cases = {
        "missing.parquet": (feats.drop_columns(["V9"]), "missing columns ['V9']"),
        "extra.csv": (sample, "unexpected columns ['tx', 'Class']; name them with --keep"),
        "empty.csv": (b"", "is empty"),
        "header.csv": (",".join(FEATURES).encode() + b"\n", "has a header but no rows"),
        "fields.csv": (",".join(FEATURES).encode() + b"\n" + b"1," * 30 + b"1\n",
                       "line 2: Expected 30 columns, got 31"),
        "null.parquet": (with_null, "row 42 (row group 0), column Amount: missing value"),
        "inf.parquet": (feats.set_column(FEATURES.index("V5"), "V5", pa.array(v5)),
                        "row 1235 (row group 0), column V5: inf is not finite"),
        "text.parquet": (feats.set_column(0, "Time", pa.array([str(v) for v in feats["Time"].to_pylist()])),
                         "column Time holds string, not numbers"),
        "garbage.parquet": (b"not parquet", "is not a readable Parquet file"),
        "empty.parquet": (feats.slice(0, 0), "has no rows"),
    }
    for name, (content, message) in cases.items():
        path = _write(tmp_path, name, content)
        assert _run(trained, str(path), "-o", str(tmp_path / "out.parquet")) == 2, name
        err = capsys.readouterr().err
        assert f"error: {path}" in err and message in err, (name, err)
        assert "Traceback" not in err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".out", "out"))]


def test_a_failed_run_leaves_an_existing_output_untouched(trained, sample, tmp_path):
    out = tmp_path / "out.parquet"
    out.write_bytes(b"previous result")
    path = _bad_csv(sample, tmp_path, 2900, "V1", "x")  # near the end: earlier chunks were written
    assert _run(trained, str(path), "-o", str(out), "--chunk-rows", "100") == 2
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "out.parquet"]


def test_bad_options_and_unknown_models_exit_non_zero(trained, sample, tmp_path, capsys):
    pq.write_table(sample.select(list(FEATURES)), tmp_path / "in.parquet")
    args = [str(tmp_path / "in.parquet"), "-o", str(tmp_path / "out.parquet")]
    assert score.main([*args, "--model", "fraud_detector:nosuchversion", "--quiet"]) == 3
    assert "not in the model store" in capsys.readouterr().err
    assert _run(trained, *args, "--keep", "V1") == 2
    assert "cannot be carried" in capsys.readouterr().err
    assert _run(trained, str(tmp_path / "in.parquet"), "-o", str(tmp_path / "out.txt")) == 2
    assert "cannot tell the format" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        score.main([*args, "--chunk-rows", "0"])
    assert not (tmp_path / "out.parquet").exists()


def test_explain_adds_the_services_reasons_per_row(trained, sample, tmp_path):
    from fraudscore import artifact
    from fraudscore.scoring.explain import from_artifact

    pq.write_table(sample.select(list(FEATURES)), tmp_path / "in.parquet")
    assert _run(trained, str(tmp_path / "in.parquet"), "-o", str(tmp_path / "out.parquet"), "--explain",
                "--top-k", "2") == 0
    out = pq.read_table(tmp_path / "out.parquet").to_pylist()
    X = np.column_stack([sample.column(f).to_numpy() for f in FEATURES])
    expected = from_artifact(artifact.load(trained.tag, extra_files=(artifact.EXPLAIN_FILE,))).reasons(X, 2)
    assert [row["reasons"] for row in out] == expected
    assert all(len(r["reasons"]) <= 2 for r in out) and any(r["reasons"] for r in out)


def test_probabilities_are_rounded_as_the_service_rounds_them():
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.random(200_000, dtype=np.float32),
                        np.array([0.0078125, 0.5, 1.0, 0.0, 1 / 3, 2.5e-6], np.float32)])
    assert round6(p).tolist() == [round(v, 6) for v in p.tolist()]


def test_the_command_is_registered(tmp_path):
    done = subprocess.run([sys.executable, "-m", "fraudscore", "--help"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0 and "score" in done.stdout and "backtest" in done.stdout
