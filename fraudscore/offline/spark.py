"""The same scoring on Spark, for tables of hundreds of millions of rows.

A pandas UDF (``mapInPandas``) runs the model entry's ONNX graph on the executors, with the
thresholds in force and the service's feature checks, through the same :class:`BlockScorer` as
``python -m fraudscore score``: each row gets the answer the single-machine command (and
``/fraud_score``) gives it. The driver loads the entry (checksums verified) and broadcasts the
graph (a few hundred KB); executors need numpy, pandas, pyarrow and onnxruntime, not BentoML.

    spark-submit --py-files fraudscore.zip fraudscore/offline/spark.py INPUT OUTPUT \\
        [--model-file fraud_detector.bentomodel | --model TAG] [--id-column tx] [--keep COL]

INPUT and OUTPUT are Parquet paths (any URI Spark reads: s3://, dbfs:/, hdfs://) or, with
``--table``, INPUT is a table name. Exit status as the single-machine command: 2 bad input,
3 the model cannot be loaded.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fraudscore.features import FEATURES
from fraudscore.offline.checks import Violation
from fraudscore.offline.engine import (
    DECISIONS,
    VERDICT_COLUMNS,
    BadRows,
    BlockScorer,
    ModelError,
    ModelPayload,
    feature_matrix,
    load_payload,
)
from fraudscore.offline.sources import InputError, check_columns

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

def score_dataframe(df: DataFrame, payload: ModelPayload, id_column: str | None = None,
                    keep: Sequence[str] = ()) -> DataFrame:
    """``df`` scored: its columns (or ``id_column`` and ``keep``) then the verdict columns, as the
    single-machine command writes them. Lazy, as Spark is; a bad value fails the job with a
    :class:`BadRows` message naming the column. Raises :class:`InputError` for wrong columns."""
    carry = list(dict.fromkeys(([id_column] if id_column else []) + list(keep)))
    names = df.columns
    check_columns("the table", names, carry, "name them with --keep to carry them into the output")
    columns = carry if id_column else list(names)
    from pyspark.sql import types as T

    verdict_types = (T.DoubleType(), T.IntegerType(), T.BooleanType(), T.StringType(), T.IntegerType(),
                     T.StringType())
    schema = T.StructType([df.schema[c] for c in columns] + [
        T.StructField(n, t) for n, t in zip(VERDICT_COLUMNS, verdict_types, strict=True)])
    broadcast = df.sparkSession.sparkContext.broadcast(payload)
    func = functools.partial(_score_batches, payload=broadcast, columns=columns, id_column=id_column)
    needed = columns + [f for f in FEATURES if f not in columns]
    return df.select(*needed).mapInPandas(func, schema=schema)


def _score_batches(batches: Iterator[pd.DataFrame], payload: Any, columns: list[str],
                   id_column: str | None) -> Iterator[pd.DataFrame]:
    """Runs on the executors: one scorer per task, one model call per Arrow batch."""
    scorer = BlockScorer(payload.value)
    decisions = np.array(DECISIONS, dtype=object)
    for pdf in batches:
        for name in FEATURES:
            nulls = pdf[name].isna().to_numpy()
            if nulls.any():
                row = int(np.argmax(nulls))
                raise BadRows(Violation(row, name, None, "missing value"), _row_name(pdf, row, id_column))
        features = [pdf[name].to_numpy(dtype=np.float64) for name in FEATURES]
        try:
            scorer.check(features)
        except BadRows as exc:
            raise BadRows(exc.violation, _row_name(pdf, exc.violation.row, id_column)) from None
        v = scorer.score(feature_matrix(features))
        out = pdf[columns].copy()
        out["fraud_probability"] = v.probability
        out["fraud_score"] = v.score
        out["is_fraud"] = v.is_fraud
        out["decision"] = decisions[v.decision]
        out["threshold"] = np.full(len(pdf), scorer.thresholds.block, np.int32)
        out["model_version"] = scorer.payload.version
        yield out


def _row_name(pdf: pd.DataFrame, row: int, id_column: str | None) -> str:
    if not id_column:
        return "a row"
    value = pdf[id_column].iloc[row]
    return f"row with {id_column}={getattr(value, 'item', lambda: value)()!r}"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="spark-submit ... fraudscore/offline/spark.py",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("input", help="Parquet path (or a table name with --table)")
    p.add_argument("output", help="Parquet path to write (replaced if it exists)")
    p.add_argument("--table", action="store_true", help="INPUT is a table name, not a path")
    p.add_argument("--model", help="model-store tag on the driver (default: FRAUD_MODEL_TAG or latest)")
    p.add_argument("--model-file", help="a `bentoml models export` file, imported on the driver")
    p.add_argument("--id-column")
    p.add_argument("--keep", action="append", default=[], metavar="COLUMN")
    return p.parse_args(argv)


def driver_payload(model: str | None, model_file: str | None) -> ModelPayload:
    """The payload, from the driver's model store or from an exported model file."""
    if model_file:
        # a private store, set before BentoML is imported, so the driver's own store is untouched
        os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="fraudscore-spark-")
        import bentoml

        try:
            model = str(bentoml.models.import_model(os.path.abspath(model_file)).tag)
        except Exception as exc:  # BentoML raises its own and OS errors for unreadable files
            raise ModelError(f"cannot import {model_file}: {exc}") from None
    return load_payload(model)[0]


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        payload = driver_payload(args.model, args.model_file)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    from pyspark.errors import PySparkException
    from pyspark.sql import SparkSession

    spark = spark or SparkSession.builder.appName("fraudscore-score").getOrCreate()
    try:
        df = spark.read.table(args.input) if args.table else spark.read.parquet(args.input)
        scored = score_dataframe(df, payload, args.id_column, args.keep)
        scored.write.mode("overwrite").parquet(args.output)
    except InputError as exc:
        print(f"error: {args.input}: {str(exc).removeprefix('the table: ')}", file=sys.stderr)
        return 2
    except PySparkException as exc:
        print(f"error: {args.input}: {_python_error(exc)}", file=sys.stderr)
        return 2
    print(f"scored {args.input} -> {args.output} with {payload.version} "
          f"(block >= {payload.block}, review >= {payload.review})", file=sys.stderr)
    return 0


def _python_error(exc: Exception) -> str:
    """The executor's own message (``BadRows: column V3: ...``) out of Spark's wrapping."""
    text = str(exc)
    marker = "BadRows: "
    if marker in text:
        return text[text.rindex(marker) + len(marker):].splitlines()[0]
    return text.splitlines()[0] if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
