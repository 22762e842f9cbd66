"""The KPI values of one scorecard as arrays indexed by KPI × account × period.

The scorecard reads, per account and KPI, the 12-period trend of values, the status and n of
the last two periods and the note of the last one. ``KpiCells`` holds exactly that as numpy
arrays, built either from the long frame of ``compute_kpis`` (any row order; the last row of a
duplicated key wins) or straight from the dense blocks ``compute_kpis`` builds internally.

The reading rules are those of one frame row taken on its own:

* a value that is missing or not finite is no value, and the cell's status is then no_data;
* n that is missing or not finite is 0, otherwise truncated to an integer;
* status is kept as ``LOW_SAMPLE`` or ``NO_DATA`` when it says so, anything else is ``OK``;
* a missing or NaN note is "";
* a cell the frame does not have is no_data with n 0 and the note "not computed".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

OK, LOW_SAMPLE, NO_DATA = 0, 1, 2
NOT_COMPUTED = "not computed"


def finite_or_none(x) -> float | None:
    if x is None or x is pd.NA:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _floats(column: pd.Series) -> np.ndarray:
    """float64 with NaN for anything that is not a finite number (as ``finite_or_none`` reads it)."""
    dtype = column.dtype
    if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        try:
            out = column.to_numpy(dtype="float64", na_value=np.nan)
        except (TypeError, ValueError):
            out = None
        if out is not None:
            out = out.copy() if not out.flags.writeable else out
            out[~np.isfinite(out)] = np.nan
            return out
    values = [finite_or_none(x) for x in column.tolist()]
    return np.array([np.nan if v is None else v for v in values], dtype="float64")


def _note(x) -> str:
    return "" if x is None or x is pd.NA or x != x else str(x)


@dataclass
class KpiCells:
    """value (float64, NaN: no value), n (int64) and status (int8) per [kpi, account, period];
    note (object) per [kpi, account] for the last period."""

    kpi_ids: list[str]
    account_ids: list[str]
    labels: list[str]
    value: np.ndarray
    n: np.ndarray
    status: np.ndarray
    note: np.ndarray

    @classmethod
    def empty(cls, kpi_ids: list[str], account_ids: list[str], labels: list[str]) -> KpiCells:
        shape = (len(kpi_ids), len(account_ids), len(labels))
        note = np.empty(shape[:2], dtype=object)
        note.fill(NOT_COMPUTED)
        return cls(list(kpi_ids), list(account_ids), list(labels), np.full(shape, np.nan), np.zeros(shape, np.int64),
                   np.full(shape, NO_DATA, np.int8), note)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame | None, kpi_ids: list[str], account_ids: list[str],
                   labels: list[str]) -> KpiCells:
        """The cells of ``kpi_ids`` × ``account_ids`` × ``labels`` from a long KPI frame."""
        cells = cls.empty(kpi_ids, account_ids, labels)
        if frame is None or frame.empty or not (kpi_ids and account_ids and labels):
            return cells
        keys = []
        for column, wanted in (("kpi", kpi_ids), ("account_id", account_ids), ("period", labels)):
            keys.append(pd.Index(wanted).get_indexer(frame[column].astype(str).to_numpy(dtype=object)))
        k, a, p = keys
        found = (k >= 0) & (a >= 0) & (p >= 0)
        rows = np.flatnonzero(found)
        flat = (k[rows] * len(account_ids) + a[rows]) * len(labels) + p[rows]
        # A key given twice: the last row wins.
        _, last = np.unique(flat[::-1], return_index=True)
        keep = np.sort(len(flat) - 1 - last)
        rows, flat = rows[keep], flat[keep]

        value = _floats(frame["value"].iloc[rows]) if len(rows) else np.empty(0)
        n = _floats(frame["n"].iloc[rows]) if len(rows) else np.empty(0)
        n = np.where(np.isnan(n), 0, n)
        with np.errstate(invalid="ignore"):
            n = np.trunc(n).astype(np.int64)
        raw = frame["status"].iloc[rows].to_numpy(dtype=object)
        status = np.full(len(rows), OK, np.int8)
        status[raw == "low_sample"] = LOW_SAMPLE
        status[(raw == "no_data") | np.isnan(value)] = NO_DATA
        # str(status) is what the rules compare; an object whose str() is a status name counts as it.
        odd = np.flatnonzero([type(s) is not str for s in raw])
        for i in odd:
            text = str(raw[i])
            if text == "no_data" or np.isnan(value[i]):
                status[i] = NO_DATA
            elif text == "low_sample":
                status[i] = LOW_SAMPLE
            else:
                status[i] = OK

        cells.value.reshape(-1)[flat] = value
        cells.n.reshape(-1)[flat] = n
        cells.status.reshape(-1)[flat] = status
        last_period = p[rows] == len(labels) - 1
        if last_period.any():
            notes = (frame["note"].iloc[rows[last_period]].tolist() if "note" in frame
                     else [""] * int(last_period.sum()))
            cells.note.reshape(-1)[flat[last_period] // len(labels)] = [_note(x) for x in notes]
        return cells

    @classmethod
    def from_arrays(cls, arrays: dict, kpi_ids: list[str], account_ids: list[str], labels: list[str]) -> KpiCells:
        """The cells from ``kpis.compute_kpi_arrays`` (KPI id -> KpiArrays over ``labels``)."""
        cells = cls.empty(kpi_ids, account_ids, labels)
        wanted = pd.Index(account_ids)
        periods = len(labels)
        for k, kpi_id in enumerate(kpi_ids):
            got = arrays.get(kpi_id)
            if got is None or not got.account_ids:
                continue
            position = wanted.get_indexer(got.account_ids)
            have = np.flatnonzero(position >= 0)
            rows = position[have]
            value = got.value.reshape(-1, periods)[have]
            value = np.where(np.isfinite(value), value, np.nan)
            status = got.status.reshape(-1, periods)[have]
            cells.value[k, rows] = value
            cells.n[k, rows] = got.n.reshape(-1, periods)[have]
            cells.status[k, rows] = np.where(np.isnan(value), NO_DATA, status)
            notes = got.note
            cells.note[k, rows] = [_note(notes[i]) for i in have.tolist()]
        return cells

    def select(self, kpi_ids: list[str], account_ids: list[str]) -> KpiCells:
        """These KPIs and accounts, in this order; cells not held here are "not computed"."""
        if kpi_ids == self.kpi_ids and account_ids == self.account_ids:
            return self
        out = KpiCells.empty(kpi_ids, account_ids, self.labels)
        k_have = pd.Index(self.kpi_ids).get_indexer(kpi_ids) if self.kpi_ids else np.full(len(kpi_ids), -1)
        a_have = (pd.Index(self.account_ids).get_indexer(account_ids) if self.account_ids
                  else np.full(len(account_ids), -1))
        k_out, a_out = np.flatnonzero(k_have >= 0), np.flatnonzero(a_have >= 0)
        if len(k_out) and len(a_out):
            src = np.ix_(k_have[k_out], a_have[a_out])
            dst = np.ix_(k_out, a_out)
            out.value[dst] = self.value[src]
            out.n[dst] = self.n[src]
            out.status[dst] = self.status[src]
            out.note[dst] = self.note[src]
        return out

    def last_values(self, kpi_id: str) -> dict[str, float]:
        """account_id -> the last period's value of ``kpi_id`` where it has one (status not no_data)."""
        if kpi_id not in self.kpi_ids or not self.labels:
            return {}
        k = self.kpi_ids.index(kpi_id)
        values = self.value[k, :, -1]
        keep = np.flatnonzero((self.status[k, :, -1] != NO_DATA) & ~np.isnan(values))
        return dict(zip([self.account_ids[i] for i in keep], values[keep].tolist()))
