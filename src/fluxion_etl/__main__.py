"""``python -m fluxion_etl`` is the ``fluxion-etl`` command (the subprocess launcher uses it)."""

from fluxion_etl.cli.main import main

main()
