"""Benchmarks of fluxion-etl (docs/BENCHMARKS.md). Run each as ``python -m bench.<name> --help``."""
