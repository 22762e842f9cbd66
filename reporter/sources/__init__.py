"""Sources stage: load every configured source into one embedded DuckDB database."""
