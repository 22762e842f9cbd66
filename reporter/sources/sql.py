"""Query kinds: sql (any SQLAlchemy database) and duckdb (a database file, opened read-only).

The URL may hold a password, so no message built here ever contains it.
"""
from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy import create_engine, exc, text
from sqlalchemy.engine import make_url

from ..config.models import DuckdbSource, SqlSource
from .base import Context, Raw, blocking, first_line, source_file

HORIZON_PARAMS = ("period_start", "period_end")


def read_sql(source: SqlSource, ctx: Context) -> Raw:
    label = f"{ctx.name} (sql)"
    statement = text(source.query)
    used = set(statement.compile().params)
    unknown = sorted(used - set(HORIZON_PARAMS))
    if unknown:
        raise blocking(f"the query uses {', '.join(':' + p for p in unknown)}; only :period_start and :period_end "
                       "are given a value", label)
    # Bind only what the query names: drivers reject parameters a statement does not use.
    params = {k: v for k, v in zip(HORIZON_PARAMS, ctx.horizon) if k in used}
    try:
        engine = create_engine(source.url)
    except exc.NoSuchModuleError:
        raise blocking(f'url: SQLAlchemy has no dialect "{make_url(source.url).drivername}"', label) from None
    except exc.ArgumentError:
        raise blocking("url: not a valid SQLAlchemy URL (not shown, it may hold a password)", label) from None
    except ImportError as e:
        raise blocking(f"url: the database driver is not installed ({e.name})", label) from None
    what = "cannot connect to the database"
    try:
        with engine.connect() as conn:
            what = "the query failed"
            rows = conn.execute(statement, params)
            # coerce_float: numeric columns arrive as Decimal, which DuckDB would not take as numbers
            frame = pd.DataFrame.from_records(rows.fetchall(), columns=list(rows.keys()), coerce_float=True)
    except exc.DBAPIError as e:
        raise blocking(f"{what}: {_without_secrets(first_line(e.orig), source.url)}", label) from None
    finally:
        engine.dispose()
    frame.insert(0, "__row", np.arange(1, len(frame) + 1, dtype=np.int64))
    ctx.con.register(ctx.relation, frame)
    return Raw(label, None)


def _without_secrets(message: str, url: str) -> str:
    password = make_url(url).password
    for secret in (url, password):
        if secret:
            message = message.replace(str(secret), "***")
    return message


def read_duckdb(source: DuckdbSource, ctx: Context) -> Raw:
    path = source_file(ctx, source.path)
    try:
        with duckdb.connect(str(path), read_only=True) as db:
            table = db.sql(source.query).to_arrow_table()
    except duckdb.Error as e:
        raise blocking(f"the query failed: {first_line(e)}", source.path) from None
    table = table.append_column("__row", pa.array(np.arange(1, table.num_rows + 1, dtype=np.int64)))
    ctx.con.register(ctx.relation, table)
    return Raw(source.path, None)
