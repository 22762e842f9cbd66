"""File kinds: csv, excel, parquet. Each puts raw rows under ctx.relation (see base.py)."""
from __future__ import annotations

import hashlib
import io

import duckdb
import numpy as np
import pandas as pd

from ..config.models import CsvSource, ExcelSource, ParquetSource
from ..errors import did_you_mean
from .base import Context, Raw, blocking, first_line, source_file, sql_literal

UTF8_BOM = b"\xef\xbb\xbf"


def read_csv(source: CsvSource, ctx: Context) -> Raw:
    path = source_file(ctx, source.path)
    data = path.read_bytes()  # read once: the fingerprint is of exactly the bytes parsed
    text = _decode(data, source.encoding, source.path)
    try:
        # Everything as text, nothing guessed: validate.py converts with the configured formats.
        # Blank lines are kept so row numbers stay the spreadsheet's; they are dropped below.
        frame = pd.read_csv(io.StringIO(text), sep=source.delimiter, dtype=str, keep_default_na=False,
                            na_filter=False, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise blocking("the file is empty: expected a header row and data rows", source.path) from None
    except pd.errors.ParserError as e:
        raise blocking(f"cannot read as CSV with delimiter {source.delimiter!r}: {first_line(e)}", source.path) from None
    frame = frame.fillna("")  # short rows leave NaN in the missing cells
    _register_sheet(ctx, frame, frame.eq("").all(axis=1), source.path)
    return Raw(source.path, hashlib.sha256(data).hexdigest(), header_row=1)


def _decode(data: bytes, encoding: str, label: str) -> str:
    # Excel's "CSV UTF-8" starts with a byte-order mark; it is never data, so utf-8 drops it too.
    codec = "utf-8-sig" if encoding == "utf-8" else encoding
    if data.startswith(UTF8_BOM) and not codec.startswith("utf-8"):
        # gbk happily decodes UTF-8 into nonsense; the mark proves which one it is.
        raise blocking(f"the file starts with a UTF-8 byte-order mark, so it is not {encoding}: set encoding: utf-8-sig",
                       label, 1)
    try:
        return data.decode(codec)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise blocking(f"cannot decode the file as {encoding} (byte 0x{data[e.start]:02x} is not valid there); "
                       f"{_suggest_encoding(data)}", label, line) from None


def _suggest_encoding(data: bytes) -> str:
    if data.startswith(UTF8_BOM):
        return "it starts with a UTF-8 byte-order mark: set encoding: utf-8-sig"
    for codec, advice in (("utf-8", "it reads as UTF-8: set encoding: utf-8"),
                          ("gb18030", "it reads as Chinese GB18030 (a Chinese Excel export?): set encoding: gb18030 (or gbk)")):
        try:
            data.decode(codec)
            return advice
        except UnicodeDecodeError:
            pass
    return "set encoding: to the one the file was saved in (gb18030, gbk, utf-8-sig, latin-1)"


def read_excel(source: ExcelSource, ctx: Context) -> Raw:
    path = source_file(ctx, source.path)
    data = path.read_bytes()
    try:
        book = pd.ExcelFile(io.BytesIO(data), engine="openpyxl")
    except Exception as e:  # openpyxl raises zip, XML and its own errors for a file that is not .xlsx
        raise blocking(f"cannot read as an Excel workbook (.xlsx): {first_line(e)}", source.path) from None
    names = book.sheet_names
    if isinstance(source.sheet, str) and source.sheet not in names:
        raise blocking(f'no sheet "{source.sheet}"; sheets are: {", ".join(names)}{did_you_mean(source.sheet, names)}',
                       source.path)
    if isinstance(source.sheet, int) and not 0 <= source.sheet < len(names):
        raise blocking(f"no sheet number {source.sheet} (counted from 0); sheets are: {', '.join(names)}", source.path)
    try:
        frame = pd.read_excel(book, sheet_name=source.sheet, dtype=object)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    if frame.columns.empty:
        raise blocking(f"sheet {source.sheet!r} is empty: expected a header row and data rows", source.path)
    blank = frame.isna().all(axis=1)
    frame = frame.apply(_excel_column)
    _register_sheet(ctx, frame, blank, source.path)
    return Raw(source.path, hashlib.sha256(data).hexdigest(), header_row=1)


def _excel_column(column: pd.Series) -> pd.Series:
    """Keep cells Excel typed uniformly (dates, numbers, booleans); everything else becomes text."""
    kind = pd.api.types.infer_dtype(column, skipna=True)
    if kind in ("datetime", "datetime64", "date"):
        return pd.to_datetime(column)
    if kind in ("integer", "floating", "mixed-integer-float", "decimal"):
        return pd.to_numeric(column)
    if kind == "boolean":
        return column.astype("boolean")
    # A real date cell among text reads as "2026-01-05 00:00:00"; midnight means a plain date.
    text = column.where(column.notna(), "").astype(str)
    return text.str.replace(r"^(\d{4}-\d{2}-\d{2}) 00:00:00$", r"\1", regex=True)


def _register_sheet(ctx: Context, frame: pd.DataFrame, blank: pd.Series, label: str) -> None:
    frame.columns = [str(c).strip() for c in frame.columns]
    frame.insert(0, "__row", np.arange(2, len(frame) + 2, dtype=np.int64))  # header is row 1
    frame = frame[~blank.to_numpy()]
    if frame.empty:
        raise blocking("no data rows below the header", label)
    ctx.con.register(ctx.relation, frame)


def read_parquet(source: ParquetSource, ctx: Context) -> Raw:
    path = source_file(ctx, source.path)
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    # A view, not a copy: DuckDB scans the file in parallel once, while converting.
    try:
        ctx.con.execute(
            f"CREATE TEMP VIEW {ctx.relation} AS SELECT file_row_number + 1 AS __row, * EXCLUDE (file_row_number) "
            f"FROM read_parquet({sql_literal(str(path))}, file_row_number = true)"
        )
        rows = ctx.con.execute(f"SELECT count(*) FROM {ctx.relation}").fetchone()[0]
    except duckdb.Error as e:
        raise blocking(f"cannot read as Parquet: {first_line(e)}", source.path) from None
    if rows == 0:
        raise blocking("the file has no data rows", source.path)
    return Raw(source.path, digest)
