"""Schema migrations (Alembic, shipped inside the package), safe when several processes start at
once: the migration runs under a lock, so the first process migrates and the others find the
schema at head and do nothing.

    python -m fraudscore migrate [--store URL]      # or: migrate(url) from code
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import sys
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from ..settings import ConfigError, get_settings
from .engine import create_store_engine, describe_error, parse_url, redact, sqlite_path

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# pg_advisory_xact_lock key: any constant the application owns ("fraudsto" in ASCII)
_PG_LOCK_KEY = 0x6672617564_73746F


def _config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The revision the code expects."""
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def current(engine: Engine) -> str | None:
    """The store's revision (None for an empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextlib.contextmanager
def _file_lock(path: Path | None) -> Iterator[None]:
    if path is None:  # in-memory SQLite: one process only
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".migrate-lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def migrate(url: str | None = None, engine: Engine | None = None) -> str:
    """Bring the store at ``url`` (or ``engine``) to the head revision; returns it. Concurrent
    callers wait for each other. PostgreSQL: a transaction-scoped advisory lock, then every step
    in that one transaction (DDL is transactional there). SQLite: an exclusive lock on a file beside
    the database, then BEGIN IMMEDIATE."""
    own = engine is None
    if engine is None:
        engine = create_store_engine(url if url is not None else get_settings().resolved_store_url())
    try:
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
                command.upgrade(_config(conn), "head")
        else:
            with _file_lock(sqlite_path(engine.url)), \
                    engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
                command.upgrade(_config(conn), "head")
        return current(engine) or ""
    finally:
        if own:
            engine.dispose()


def main(argv: list[str] | None = None) -> int:
    """``python -m fraudscore migrate``: exit 0 at head, 2 on a bad URL or an unreachable store."""
    p = argparse.ArgumentParser(prog="python -m fraudscore migrate", description=__doc__.split("\n\n")[0])
    p.add_argument("--store", help="store URL (default: FRAUD_STORE_URL, else SQLite in FRAUD_DATA_DIR)")
    args = p.parse_args(argv)
    shown = "the store"
    try:
        url = args.store or get_settings().resolved_store_url()
        parse_url(url, "--store" if args.store else "FRAUD_STORE_URL")
        shown = redact(url)
        revision = migrate(url)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        print(f"error: cannot migrate {shown}: {describe_error(exc)}", file=sys.stderr)
        return 2
    print(f"{shown}: at revision {revision}")
    return 0
