"""``python -m fluxion_etl.soak``: the soak without the rest of the CLI."""

from __future__ import annotations

from fluxion_etl.cli.soak import standalone

standalone()
