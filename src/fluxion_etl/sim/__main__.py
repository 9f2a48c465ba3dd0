"""``python -m fluxion_etl.sim``: run the KLK simulator alone (used by ``simulator_process``)."""

from __future__ import annotations

from fluxion_etl.cli.sim import standalone

standalone()
