"""Alembic migrations of ``fluxion_etl.store.schema``; applied by ``fluxion-etl db upgrade``."""
