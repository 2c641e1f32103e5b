"""``python -m fraudscore score INPUT -o OUTPUT``: score a CSV or Parquet file with the served model.

Each row gets the answer ``/fraud_score`` would give it (same model entry, verified checksums, same
thresholds in force, same feature checks): fraud_probability, fraud_score, is_fraud, decision,
threshold, model_version. Chunks are read, scored on every core and written in order, so memory
holds a few chunks whatever the file's size; the output appears only when all of it is written.

Exit status: 0 scored; 2 bad options or a bad input file (the message names file, place and
column; no output is written); 3 the model cannot be loaded; 1 the output cannot be written.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from ..features import FEATURES
from .engine import DECISIONS, VERDICT_COLUMNS, BadRows, BlockScorer, ModelError, feature_matrix, load_payload
from .explain import REASONS_COLUMN, ExplainUnavailable, load_explainer, reasons_array
from .sinks import OutputError, Sink
from .sources import Chunk, InputError, file_format, open_source

DEFAULT_CHUNK_ROWS = 65_536
_DECISION_DICT = pa.array(DECISIONS)


def _positive(v: str) -> int:
    n = int(v)
    if n < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return n


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fraudscore score", description=__doc__.split("\n\n")[0])
    p.add_argument("input", help="CSV (.csv, .csv.gz, ...) or Parquet (.parquet) file: Time, V1-V28, Amount")
    p.add_argument("-o", "--output", required=True, help="file to write (.parquet or .csv)")
    p.add_argument("--id-column", help="a column to carry into the output instead of the features")
    p.add_argument("--keep", action="append", default=[], metavar="COLUMN",
                   help="another non-feature column to accept and carry into the output (repeatable)")
    p.add_argument("--model", help="model-store tag (default: FRAUD_MODEL_TAG, else fraud_detector:latest)")
    p.add_argument("--explain", action="store_true", help="add a reasons column (top features per row)")
    p.add_argument("--top-k", type=_positive, default=3, help="reasons per row with --explain (default 3)")
    p.add_argument("--input-format", choices=["csv", "parquet"], help="default: from the file name")
    p.add_argument("--output-format", choices=["csv", "parquet"], help="default: from the file name")
    p.add_argument("--chunk-rows", type=_positive, default=DEFAULT_CHUNK_ROWS,
                   help=f"rows per chunk (default {DEFAULT_CHUNK_ROWS}); memory holds workers + 2 chunks")
    p.add_argument("--workers", type=_positive, default=os.cpu_count() or 1,
                   help="chunks scored at once, one core each (default: every core)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary line")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    _prefer_jemalloc()  # before any reader exists: a reader keeps the pool it was made with
    carry = list(dict.fromkeys(([args.id_column] if args.id_column else []) + args.keep))
    clash = [c for c in carry if c in FEATURES or c in VERDICT_COLUMNS or c == REASONS_COLUMN]
    if clash:
        return _fail(f"--id-column/--keep {clash}: a feature or an output column cannot be carried", 2)
    try:
        out_fmt = file_format(args.output, args.output_format)
        source = open_source(args.input, file_format(args.input, args.input_format), args.chunk_rows,
                             carry, extra_hint="name them with --keep to carry them into the output")
        payload, art = load_payload(args.model)
        explainer = load_explainer(art) if args.explain else None
    except InputError as exc:
        return _fail(str(exc), 2)
    except (ModelError, ExplainUnavailable) as exc:
        return _fail(str(exc), 3)
    scorer = BlockScorer(payload)
    columns = carry if args.id_column else [c for c in source.names if c in FEATURES or c in carry]

    def build(chunk: Chunk) -> pa.RecordBatch:
        try:
            scorer.check(chunk.features)
        except BadRows as exc:
            raise InputError(f"{source.path}, {chunk.where(exc.violation.row)}, {exc}") from None
        X = feature_matrix(chunk.features)
        extra = {REASONS_COLUMN: reasons_array(explainer, X, args.top_k, out_fmt)} if explainer else {}
        return output_batch(chunk.batch, columns, scorer, X, out_fmt, extra)

    started = time.perf_counter()
    try:
        with Sink(args.output, out_fmt) as sink, _progress(source.total_rows, args.quiet) as advance:
            for batch in in_order(source.chunks(), build, args.workers):
                sink.write(batch)
                advance(batch.num_rows)
    except InputError as exc:
        return _fail(str(exc), 2)
    except OutputError as exc:
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        return _fail("interrupted; no output written", 130)
    if not args.quiet:
        took = time.perf_counter() - started
        print(f"scored {sink.rows:,} rows in {took:.3f} s ({sink.rows / took:,.0f} rows/s) with "
              f"{payload.version} (block >= {payload.block}, review >= {payload.review}) -> {args.output}",
              file=sys.stderr)
    return 0


def output_batch(batch: pa.RecordBatch, columns: Sequence[str], scorer: BlockScorer, X: np.ndarray,
                 fmt: str, extra: dict[str, pa.Array] | None = None) -> pa.RecordBatch:
    """The carried ``columns`` of ``batch``, then the service's verdict fields for rows ``X``."""
    v = scorer.score(X)
    n = len(X)
    p = scorer.payload
    arrays = [batch.column(c) for c in columns] + [
        pa.array(v.probability),
        pa.array(v.score),
        pa.array(v.is_fraud),
        pa.DictionaryArray.from_arrays(pa.array(v.decision), _DECISION_DICT),
        pa.array(np.full(n, p.block, np.int32)),
        pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)), pa.array([p.version])),
    ]
    names = [*columns, *VERDICT_COLUMNS]
    for name, array in (extra or {}).items():
        arrays.append(array)
        names.append(name)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def in_order(chunks: Iterator[Chunk], build: Callable[[Chunk], pa.RecordBatch],
              workers: int) -> Iterator[pa.RecordBatch]:
    """``build`` each chunk on a pool of ``workers`` threads (ONNX Runtime and Arrow release the
    GIL); yield results in file order, holding at most ``workers + 1`` chunks in flight."""
    pending: deque[Future[pa.RecordBatch]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="score") as pool:
        try:
            for chunk in chunks:
                pending.append(pool.submit(build, chunk))
                if len(pending) > workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()


class _progress:
    """A tqdm bar of rows and rows/s on stderr (a terminal only), as a context manager."""

    def __init__(self, total: int | None, quiet: bool) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, unit=" rows", unit_scale=True, desc="scoring",
                         disable=True if quiet else None, file=sys.stderr)

    def __enter__(self) -> Callable[[int], object]:
        return self._bar.update

    def __exit__(self, *exc: object) -> None:
        self._bar.close()


def _prefer_jemalloc() -> None:
    """Arrow's jemalloc pool where the wheel has it, keeping the pages it frees: chunk after chunk
    needs the same few buffers, and memory handed back to the kernel comes back zeroed, page by
    page (with the default mimalloc pool, zeroing fresh pages was ~10% of the CPU time, perf)."""
    with contextlib.suppress(NotImplementedError):
        pa.set_memory_pool(pa.jemalloc_memory_pool())
        pa.jemalloc_set_decay_ms(-1)  # memory stays bounded by the chunks in flight


def _fail(message: str, status: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return status
