"""Migrations: a fresh store, a second run, several processes at once; the tables match schema.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from fraudscore.features import FEATURES
from fraudscore.settings import ConfigError, Settings
from fraudscore.store.engine import create_store_engine, parse_url, redact
from fraudscore.store.migrate import current, head, main, migrate
from fraudscore.store.schema import metadata

ROOT = Path(__file__).resolve().parents[2]


def test_a_fresh_store_is_migrated_to_head_and_a_second_run_changes_nothing(store_url):
    assert migrate(store_url) == head() == "0002"
    assert migrate(store_url) == head()
    engine = create_store_engine(store_url)
    try:
        insp = inspect(engine)
        assert {"decisions", "labels", "alembic_version"} <= set(insp.get_table_names())
        columns = [c["name"] for c in insp.get_columns("decisions")]
        assert columns[:7] == ["id", "transaction_id", "created_at", "route", "key_name", "model_version",
                               "role"]
        assert columns[7:37] == list(FEATURES)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        engine.dispose()


def test_the_migrated_tables_are_the_ones_the_code_uses(store):
    with store.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_migrations_run_once_when_several_processes_start_together(store_url):
    # each process imports first, then all are released at once to migrate the same empty store
    code = ("import sys; from fraudscore.store.migrate import migrate; print('ready', flush=True); "
            "sys.stdin.readline(); print(migrate(sys.argv[1]))")
    procs = [subprocess.Popen([sys.executable, "-c", code, store_url], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 3, [err[-2000:] for _, err in results]
    assert [out.strip() for out, _ in results] == ["0002"] * 3
    engine = create_store_engine(store_url)
    try:
        assert current(engine) == "0002"
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        engine.dispose()


def test_the_migrate_command(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'a' / 'store.db'}"
    assert main(["--store", url]) == 0
    assert "at revision 0002" in capsys.readouterr().out
    assert main(["--store", "mysql://u:pw@h/db"]) == 2
    err = capsys.readouterr().err
    assert "--store must be sqlite:///path or postgresql://" in err and "pw" not in err


def test_an_unreachable_store_is_a_message_without_the_password(capsys):
    assert main(["--store", "postgresql://app:s3cret-pw@127.0.0.1:1/db"]) == 2
    err = capsys.readouterr().err
    assert "cannot migrate postgresql://app:***@127.0.0.1:1/db" in err and "s3cret" not in err


def test_store_url_setting(tmp_path):
    s = Settings(_env_file=None, data_dir=tmp_path / "d")
    assert s.resolved_store_url() == f"sqlite:///{(tmp_path / 'd' / 'fraudscore.db').resolve()}"
    s = Settings(_env_file=None, store_url="postgresql://app:pw@db:5432/fraud")
    assert s.resolved_store_url() == "postgresql://app:pw@db:5432/fraud"
    assert "pw" not in repr(s)
    for bad in ("mysql://x/y", "redis://localhost", "just-a-path"):
        with pytest.raises(ConfigError, match="FRAUD_STORE_URL"):
            Settings(_env_file=None, store_url=bad).resolved_store_url()
    assert parse_url("postgres://a@b/c").drivername == "postgresql+psycopg"
    assert redact("postgresql://app:pw@db/fraud") == "postgresql://app:***@db/fraud"
