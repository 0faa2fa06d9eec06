"""Alembic environment: runs migrations on the engine handed in by ``ledger.db.upgrade``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import ledger.domain  # noqa: F401  (the domain tables join the metadata)
from ledger.schema import metadata

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # `alembic` run by hand: take the URL from the configuration
    engine = create_engine(
        config.get_main_option("sqlalchemy.url") or "sqlite:///instance/suyuan.db"
    )

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
