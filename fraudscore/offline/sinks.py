"""Writing scored files: Parquet or CSV, into a temporary file renamed into place at the end.

A run that fails or is interrupted removes its temporary file, so ``OUTPUT`` is either the
complete result or untouched (an older file of that name stays as it was).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

# Columns worth a Parquet dictionary (few distinct values); floats are not, and trying costs time.
DICTIONARY_COLUMNS = ("decision", "model_version")
# Columns whose min/max statistics are written; those of carried float columns cost ~0.3 us a row
# (a third of writing) and are rarely used to skip pages of a scored file.
STATISTICS_COLUMNS = ("fraud_probability", "fraud_score", "is_fraud", "decision", "threshold",
                      "model_version")


class OutputError(OSError):
    """The output cannot be written; the message names the file."""


class Sink:
    """``with Sink(path, fmt) as sink: sink.write(batch)``; the file appears on a clean exit."""

    def __init__(self, path: str | Path, fmt: str) -> None:
        self.path = Path(path)
        self.fmt = fmt
        self.tmp = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
        self._writer: pq.ParquetWriter | pcsv.CSVWriter | None = None
        self.rows = 0

    def __enter__(self) -> Sink:
        if not self.path.parent.is_dir():
            raise OutputError(f"cannot write {self.path}: {self.path.parent} is not a directory")
        return self

    def write(self, batch: pa.RecordBatch) -> None:
        try:
            if self._writer is None:
                self._writer = self._open(batch.schema)
            self._writer.write_batch(batch)
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self.rows += batch.num_rows

    def _open(self, schema: pa.Schema) -> pq.ParquetWriter | pcsv.CSVWriter:
        if self.fmt == "csv":
            return pcsv.CSVWriter(str(self.tmp), schema)
        dictionary = [c for c in DICTIONARY_COLUMNS if c in schema.names]
        statistics = [c for c in schema.names if c in STATISTICS_COLUMNS or not pa.types.is_floating(
            schema.field(c).type)]
        return pq.ParquetWriter(str(self.tmp), schema, compression="snappy", use_dictionary=dictionary,
                                write_statistics=statistics)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        writer, self._writer = self._writer, None
        if exc_type is None:
            try:
                if writer is not None:
                    writer.close()
                os.replace(self.tmp, self.path)
            except OSError as err:
                self._remove_tmp()
                raise OutputError(f"cannot write {self.path}: {err.strerror or err}") from None
            return
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        self._remove_tmp()

    def _remove_tmp(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()
