"""Alembic environment: the URL comes from the core's settings, the metadata from its models."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from refunds.db import normalize_url
from refunds.models import Base
from refunds.settings import Settings

config = context.config
database_url = config.attributes.get("database_url") or Settings.from_env().database_url
url = normalize_url(database_url)
options = {"target_metadata": Base.metadata, "render_as_batch": url.get_backend_name() == "sqlite"}


def run_offline() -> None:
    context.configure(url=url, literal_binds=True, **options)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
