"""The sources stage: every configured source loaded into one embedded DuckDB database.

Each entity of the canonical model (config/entities.py) becomes a typed table, whether or
not a source provides it; bad rows are rejected or block the run, as each source says.
"""
from .load import READERS, load_sources
from .result import LoadResult, RejectedRow, SourceSummary, write_quality_report

__all__ = ["READERS", "LoadResult", "RejectedRow", "SourceSummary", "load_sources", "write_quality_report"]
