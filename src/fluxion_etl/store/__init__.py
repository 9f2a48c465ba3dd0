"""Persistence: tables, migrations, engines, bulk loaders and the run ledger."""
