"""Reading the files the offline tools score: CSV or Parquet, in chunks of bounded size.

Arrow does the parsing (``pyarrow.csv``'s streaming reader, ``pyarrow.parquet`` row group by row
group), so memory holds a few chunks, never the file. Every refusal is an :class:`InputError`
whose message names the file, the place (CSV line; Parquet row and row group) and the column.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from ..features import FEATURES

PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst", ".csv.lz4")


class InputError(ValueError):
    """A file the offline tools refuse; the message names the file, place and column."""


@dataclass(frozen=True)
class Chunk:
    batch: pa.RecordBatch  # the columns read (features and carried columns), file order
    features: list[np.ndarray]  # the 30 features as float64 arrays, FEATURES order
    where: Callable[[int], str]  # "line 17" / "row 17 (row group 0)" for a row of this chunk


def file_format(path: str | Path, given: str | None = None) -> str:
    """'csv' or 'parquet': ``given``, else from the file name's ending."""
    if given:
        return given
    name = str(path).lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    raise InputError(f"{path}: cannot tell the format from the name; "
                     f"use a {'/'.join(PARQUET_SUFFIXES + CSV_SUFFIXES)} name or give the format")


class Source:
    """An input file whose header or schema has been checked; :meth:`chunks` reads it."""

    path: Path
    names: list[str]  # every column of the file, in order
    total_rows: int | None  # known for Parquet, not for CSV

    def chunks(self) -> Iterator[Chunk]:
        raise NotImplementedError


def open_source(path: str | Path, fmt: str, chunk_rows: int, carry: Sequence[str] = (),
                extra_hint: str = "", ignore_extra: bool = False) -> Source:
    """Open ``path`` and check its columns: the 30 features are required, the ``carry`` columns
    required too and read alongside; any other column is refused (``extra_hint`` says what to do),
    or with ``ignore_extra`` left unread."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"cannot read {path}: no such file")
    src: Source = CsvSource(path, chunk_rows, carry) if fmt == "csv" else \
        ParquetSource(path, chunk_rows, carry)
    if ignore_extra:
        src.names = [c for c in src.names if c in FEATURES or c in carry]
    check_columns(path, src.names, carry, extra_hint)
    return src


def check_columns(path: str | Path, names: list[str], carry: Sequence[str], hint: str) -> None:
    """Raise :class:`InputError` unless ``names`` holds the features and ``carry``, and no more."""
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"{path}: duplicate columns {dupes}")
    missing = [c for c in (*FEATURES, *carry) if c not in names]
    extra = [c for c in names if c not in FEATURES and c not in carry]
    if missing:
        raise InputError(f"{path}: missing columns {missing}")
    if extra:
        raise InputError(f"{path}: unexpected columns {extra}{'; ' + hint if hint else ''}")


def _float64(col: pa.Array) -> np.ndarray:
    return col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def _first_null(batch: pa.RecordBatch, names: Sequence[str]) -> tuple[int, str] | None:
    found = None
    for name in names:
        col = batch.column(name)
        if col.null_count:
            row = int(np.argmax(pc.is_null(col).to_numpy(zero_copy_only=False)))
            if found is None or row < found[0]:
                found = (row, name)
    return found


class ParquetSource(Source):
    def __init__(self, path: Path, chunk_rows: int, carry: Sequence[str]) -> None:
        self.path, self._chunk_rows, self._carry = path, chunk_rows, list(carry)
        try:
            # buffered: pages are read as they are decoded, not whole column chunks at once
            self._file = pq.ParquetFile(path, buffer_size=1 << 20)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{path} is not a readable Parquet file: {exc}") from None
        schema = self._file.schema_arrow
        self.names = schema.names
        self.total_rows = self._file.metadata.num_rows
        for name in FEATURES:
            if name in self.names:
                t = schema.field(name).type
                if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
                    raise InputError(f"{path}: column {name} holds {t}, not numbers")
        if self.total_rows == 0:
            raise InputError(f"{path} has no rows")

    def chunks(self) -> Iterator[Chunk]:
        columns = [c for c in self.names if c in FEATURES or c in self._carry]
        start = 0
        for group in range(self._file.num_row_groups):
            try:
                batches = self._file.iter_batches(batch_size=self._chunk_rows, row_groups=[group],
                                                  columns=columns, use_threads=False)
                for batch in batches:
                    yield self._chunk(batch, group, start)
                    start += batch.num_rows
            except pa.ArrowException as exc:
                raise InputError(f"{self.path}, row group {group}: unreadable: {exc}") from None

    def _chunk(self, batch: pa.RecordBatch, group: int, start: int) -> Chunk:
        def where(i: int) -> str:
            return f"row {start + i + 1} (row group {group})"

        null = _first_null(batch, FEATURES)
        if null is not None:
            raise InputError(f"{self.path}, {where(null[0])}, column {null[1]}: missing value")
        return Chunk(batch, [_float64(batch.column(f)) for f in FEATURES], where)


# pyarrow's messages when it parses on one thread (as here): "In CSV column #3: Row #7: CSV
# conversion error to double: invalid value 'x'" and "CSV parse error: Row #7: Expected 31 columns, got 30"
_CONVERSION = re.compile(r"In CSV column #(\d+): (?:Row #(\d+): )?CSV conversion error to \w+: "
                         r"invalid value '(.*)'", re.DOTALL)
_PARSE_ROW = re.compile(r"Row #(\d+): ")


class CsvSource(Source):
    """A CSV file with a header line; compressed when its name ends .gz, .bz2, .zst or .lz4.

    Line numbers assume no line breaks inside quoted values (true of numeric files)."""

    total_rows = None

    def __init__(self, path: Path, chunk_rows: int, carry: Sequence[str]) -> None:
        self.path, self._chunk_rows, self._carry = path, chunk_rows, list(carry)
        # carried columns stay text, exactly as written (ids such as "007" keep their zeros)
        self._types = {**{f: pa.float64() for f in FEATURES}, **{c: pa.string() for c in carry}}
        self._include: list[str] = []  # all columns
        self.names = self._open(1 << 16, types={}).schema.names  # the header, every value as text
        self._header = list(self.names)
        self._block = _block_size(path, chunk_rows)
        self._reader: pcsv.CSVStreamingReader | None = None

    def _open(self, block_size: int, types: dict[str, pa.DataType] | None = None) -> pcsv.CSVStreamingReader:
        try:
            return pcsv.open_csv(
                self.path,
                read_options=pcsv.ReadOptions(block_size=block_size, use_threads=False),
                # blank lines are kept (as missing values) so that line numbers stay exact
                parse_options=pcsv.ParseOptions(ignore_empty_lines=False),
                convert_options=pcsv.ConvertOptions(column_types=self._types if types is None else types,
                                                    null_values=[""], strings_can_be_null=False,
                                                    include_columns=self._include if types is None else []),
            )
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):
                raise InputError(f"{self.path} is empty") from None
            raise self._diagnose(exc) from None
        except OSError as exc:
            raise InputError(f"cannot read {self.path}: {exc}") from None

    def chunks(self) -> Iterator[Chunk]:
        if self._reader is None:
            # the columns kept in ``names`` only (all of them unless open_source dropped some)
            self._include = list(self.names)
            self._reader = self._open(block_size=self._block)
        start = 0
        while True:
            try:
                batch = self._reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                raise self._diagnose(exc) from None
            except OSError as exc:
                raise InputError(f"cannot read {self.path}: {exc}") from None
            for offset in range(0, batch.num_rows, self._chunk_rows):
                part = batch.slice(offset, self._chunk_rows)
                yield self._chunk(part, start)
                start += part.num_rows
        if start == 0:
            raise InputError(f"{self.path} has a header but no rows")

    def _chunk(self, batch: pa.RecordBatch, start: int) -> Chunk:
        def where(i: int) -> str:
            return f"line {start + i + 2}"

        null = _first_null(batch, FEATURES)
        if null is not None:
            raise InputError(f"{self.path}, {where(null[0])}, column {null[1]}: missing value")
        return Chunk(batch, [_float64(batch.column(f)) for f in FEATURES], where)

    def _diagnose(self, exc: pa.ArrowInvalid) -> InputError:
        """Arrow's message, reworded to name the file, the line and the column."""
        msg = str(exc)
        conv = _CONVERSION.search(msg)
        if conv:
            column = self._header[int(conv.group(1))] if hasattr(self, "_header") else f"#{conv.group(1)}"
            place = f", line {conv.group(2)}" if conv.group(2) else ""
            return InputError(f"{self.path}{place}, column {column}: {conv.group(3)!r} is not a number")
        parse = _PARSE_ROW.search(msg)
        if parse:
            return InputError(f"{self.path}, line {parse.group(1)}: {msg[parse.end():].strip()}")
        return InputError(f"{self.path}: {msg}")


def _block_size(path: Path, chunk_rows: int) -> int:
    """Bytes per read: about ``chunk_rows`` rows, judged from the first lines, within 64 KiB-64 MiB."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    lines = max(head.count(b"\n"), 1)
    per_row = max(len(head) // lines, 16) if not str(path).endswith(CSV_SUFFIXES[1:]) else 600
    return int(min(max(per_row * chunk_rows * 1.2, 1 << 16), 1 << 26))
