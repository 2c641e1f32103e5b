"""Connecting to the store: URL checks, redaction, and engines tuned for each database.

PostgreSQL goes through psycopg 3; SQLite through the standard library, in WAL mode with a busy
timeout, because two worker processes write one file.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ..settings import ConfigError

# Seconds a connection attempt may take before the writer counts the store as down.
CONNECT_TIMEOUT_S = 5
# Milliseconds an SQLite writer waits for the other worker's write lock before giving up (the
# writer then retries the batch).
SQLITE_BUSY_TIMEOUT_MS = 5_000
_PG = ("postgresql", "postgres", "postgresql+psycopg")
_SQLITE = ("sqlite", "sqlite+pysqlite")


def parse_url(url: str, what: str = "FRAUD_STORE_URL") -> URL:
    """The URL as SQLAlchemy needs it (``postgresql://`` -> psycopg 3); :class:`ConfigError`
    naming ``what`` (the setting or option) when it is neither SQLite nor PostgreSQL or cannot be
    parsed."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"{what} cannot be parsed as a database URL") from None
    if parsed.drivername in _PG:
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername in _SQLITE:
        return parsed.set(drivername="sqlite+pysqlite")
    raise ConfigError(f"{what} must be sqlite:///path or postgresql://..., "
                      f"not {parsed.drivername}://")


def redact(url: str | URL) -> str:
    """The URL with any password replaced by ``***``: the only form that may be printed or
    stored."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return "<unparseable URL>"
    return parsed.render_as_string(hide_password=True)


def sqlite_path(url: URL) -> Path | None:
    """The database file of an SQLite URL (None for an in-memory database or PostgreSQL)."""
    if url.get_backend_name() != "sqlite":
        return None
    db = url.database
    return Path(db) if db and db != ":memory:" and not db.startswith("file:") else None


def create_store_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine on the store. SQLite: the folder is created, WAL and a busy timeout set, and
    transactions opened explicitly (``BEGIN IMMEDIATE`` under the execution option
    ``sqlite_immediate=True``, for writers)."""
    parsed = parse_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() == "postgresql":
        connect_args = {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "fraudscore",
                        # a store that stops answering mid-write fails the write in 10 s instead of
                        # holding it for the kernel's TCP timeout (minutes)
                        "tcp_user_timeout": 10_000, "keepalives_idle": 10}
        return create_engine(parsed, connect_args=connect_args, pool_size=2, max_overflow=4,
                             pool_pre_ping=True, **kwargs)
    path = sqlite_path(parsed)
    if path is not None:
        # a folder that cannot be made (a read-only file system) is the store being unreachable:
        # the writer retries and warns, scoring goes on
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)
    _sqlite_events(engine)
    return engine


def _sqlite_events(engine: Engine) -> None:
    # pysqlite opens transactions implicitly and late; SQLAlchemy's documented recipe takes over so
    # a writer can say BEGIN IMMEDIATE (the write lock first, waiting up to the busy timeout)
    # instead of failing with SQLITE_BUSY when upgrading a read transaction.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # WAL + NORMAL: a power loss may lose the last commits, never corrupt the file
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def describe_error(exc: BaseException) -> str:
    """One line naming a database error (the driver's first line; drivers never print a
    password)."""
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [""])[0]
    return f"{type(orig).__name__}: {first}"[:300]
