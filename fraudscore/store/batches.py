"""Writing one batch of decision records in one transaction, per database.

PostgreSQL: binary COPY, the payload built mostly by numpy (pgcopy.py); a multi-row INSERT
(SQLAlchemy's insertmanyvalues) is kept for comparison (bench/store.py).
SQLite: ``executemany`` of one INSERT under BEGIN IMMEDIATE. Either way, a hook may add rows of
its own in the same transaction (the alert outbox will), and a batch whose commit may or may not
have reached the database is looked up before it is written again, so no decision is stored twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

from sqlalchemy import Connection, Engine, and_, select

from . import pgcopy
from .records import DecisionRecord, to_rows
from .schema import DECISION_COLUMNS, decisions

# Called inside the batch's transaction, after the decisions are inserted; whatever it writes
# commits (or rolls back) with them.
BatchHook = Callable[[Connection, Sequence[DecisionRecord]], None]


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


_COPY_SQL = f"COPY decisions ({_quoted(pgcopy.COLUMNS)}) FROM STDIN (FORMAT BINARY)"
# "copy_rows" (for comparison): psycopg's own binary rows, in DECISION_COLUMNS order
_COPY_ROWS_SQL = f"COPY decisions ({_quoted(DECISION_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
COPY_TYPES = ("text", "timestamptz", "text", "text", "text", "text", *["float8"] * 31,
              "int2", "text", "int2", "int2", "jsonb", "jsonb", "float8", "text")
# built from the schema's own column names, no outside input
_INSERT_SQL = (f"INSERT INTO decisions ({_quoted(DECISION_COLUMNS)}) "  # noqa: S608
               f"VALUES ({', '.join('?' * len(DECISION_COLUMNS))})")


class BatchWriter:
    """Writes batches to one engine. ``commit_uncertain`` is True after a failure that may have
    happened after the database committed (the connection broke during COMMIT)."""

    def __init__(self, engine: Engine, on_batch: BatchHook | None = None, method: str = "copy") -> None:
        self.engine = engine
        self.on_batch = on_batch
        self.commit_uncertain = False
        self._pg = engine.dialect.name == "postgresql"
        if method not in ("copy", "copy_rows", "insert"):
            raise ValueError("method must be copy, copy_rows or insert")
        self._method = method if self._pg else "executemany"
        self._conn: Connection | None = None

    def _connection(self) -> Connection:
        # One connection kept across batches: no pool checkout and no ping per batch (they cost the
        # writer as much GIL time as encoding a few hundred records). A failure discards it.
        if self._conn is None:
            opts = {} if self._pg else {"sqlite_immediate": True}
            self._conn = self.engine.connect().execution_options(**opts)
        return self._conn

    def close(self) -> None:
        """Return the kept connection (the writer calls it when it stops)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.invalidate()
            with contextlib.suppress(Exception):
                conn.close()

    def write(self, batch: Sequence[DecisionRecord]) -> None:
        """Insert ``batch`` (and the hook's rows) in one transaction; raises what the database
        raised, with nothing of the batch written unless ``commit_uncertain`` says it may be."""
        self.commit_uncertain = False
        conn = self._connection()
        try:
            tx = conn.begin()
            self._insert(conn, batch)
            if self.on_batch is not None:
                self.on_batch(conn, batch)
            self.commit_uncertain = True
            tx.commit()
            self.commit_uncertain = False
        except BaseException:
            self._discard()  # whatever state it is in, the next attempt starts on a new connection
            raise

    def _insert(self, conn: Connection, batch: Sequence[DecisionRecord]) -> None:
        if self._method == "copy":
            data = pgcopy.encode(batch)
            with conn.connection.driver_connection.cursor() as cur, cur.copy(_COPY_SQL) as copy:
                copy.write(data)
        elif self._method == "copy_rows":
            rows = to_rows(batch, json_text=False)
            with conn.connection.driver_connection.cursor() as cur, cur.copy(_COPY_ROWS_SQL) as copy:
                copy.set_types(COPY_TYPES)
                for row in rows:
                    copy.write_row(row)
        elif self._method == "insert":
            rows = to_rows(batch, json_text=False)
            conn.execute(decisions.insert(), [dict(zip(DECISION_COLUMNS, r, strict=True)) for r in rows])
        else:
            conn.exec_driver_sql(_INSERT_SQL, to_rows(batch, json_text=True, sqlite=True))

    def already_written(self, batch: Sequence[DecisionRecord]) -> bool:
        """Whether ``batch`` is in the store (a batch commits whole, so its first record tells)."""
        first = to_rows(batch[:1], json_text=True)[0]  # created_at bound through UTCDateTime
        c = decisions.c
        query = select(c.id).where(and_(c.transaction_id == first[0], c.created_at == first[1],
                                        c.role == first[5])).limit(1)
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None
