"""The ``fluxion-etl`` command line (Typer); each area registers commands from its module."""
