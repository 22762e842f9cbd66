"""Benchmarks with their data generators: `python -m bench [names...]` (`make bench`)."""
