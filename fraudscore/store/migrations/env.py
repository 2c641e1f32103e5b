"""Alembic's environment: run by :func:`fraudscore.store.migrate.migrate`, which passes an open
connection (holding the migration lock) in ``config.attributes["connection"]``."""

from __future__ import annotations

from alembic import context

from fraudscore.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
