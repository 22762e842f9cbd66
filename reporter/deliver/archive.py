"""The audit archive: every artifact kept once, never overwritten, listed in a hash-chained manifest.

Layout under the root (normally `output/archive/`):

    <report>/<period>/<file>        the artifact; a different file under a taken name becomes
                                    <stem>.r2<suffix>, <stem>.r3<suffix>, ...
    manifest.jsonl                  one JSON object per line (sorted keys, UTF-8)
    .manifest.lock                  flock'ed while a process stores, expires or verifies

Each manifest line carries `prev_sha256`, the sha256 of the previous line's bytes (without its
newline; "" on the first line), so removing, inserting or editing a line breaks the chain at the
line after it. The chain cannot show an edit of the *last* line by itself: anchor `head()`
somewhere else (the run summary, the ledger) when that matters.

An artifact line: path (relative to the root, "/"-separated), sha256, size, report, period,
account_id, recipients, message_ids, generated_at, config_sha256, data_sha256, code_version,
prev_sha256, plus any other keys the caller's meta holds. An expiry line:
{"event": "expired", "path", "sha256", "generated_at", "expired_at", "retention_years", "prev_sha256"}.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterator

from ..errors import DeliveryError

MANIFEST = "manifest.jsonl"
LOCK = ".manifest.lock"
PROBLEM_KINDS = ("tampered", "missing", "unlisted", "chain_broken")

_COMPUTED = ("path", "sha256", "size", "report", "period", "account_id", "prev_sha256", "event")
_DEFAULTS = {"recipients": [], "message_ids": [], "config_sha256": None, "data_sha256": None, "code_version": None}


@dataclass(frozen=True)
class Problem:
    kind: str   # tampered | missing | unlisted | chain_broken
    path: str   # relative to the archive root
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}: {self.detail}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _line(entry: dict) -> bytes:
    return json.dumps(entry, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _component(value: str, what: str) -> str:
    text = str(value)
    if not text or text in (".", "..") or text.startswith(".") or any(c in text for c in "/\\\0"):
        raise DeliveryError(f'{what} "{text}" cannot be an archive path component: it must be a plain '
                            'name, not empty, without "/" or "\\", not starting with "."')
    return text


def _aware(value: datetime | str, what: str) -> datetime:
    try:
        at = datetime.fromisoformat(value) if isinstance(value, str) else value
    except ValueError:
        at = None
    if not isinstance(at, datetime):
        raise DeliveryError(f"{what} {value!r} is not a date and time; give an aware datetime or ISO 8601 text")
    if at.tzinfo is None:
        raise DeliveryError(f"{what} {value} has no time zone; archive times must be aware")
    return at


def _fsync_dir(path: Path) -> None:
    """Make a new directory entry durable, not only the file's bytes."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _years_before(at: datetime, years: int) -> datetime:
    try:
        return at.replace(year=at.year - years)
    except ValueError:  # 29 February
        return at.replace(year=at.year - years, day=28)


class Archive:
    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.manifest = self.root / MANIFEST
        # What this process has read of the manifest: it only grows, so a refresh reads the tail.
        self._read_upto = 0
        self._head = ""
        self._current: dict[str, dict] = {}   # path -> its artifact entry, while not expired
        self._expired: set[str] = set()       # paths recorded as expired

    # ----------------------------------------------------------------------- writing

    def store(self, report: str, period: str, account_id: str | None, filename: str, data: bytes,
              meta: dict) -> dict:
        """Keep `data` as `<report>/<period>/<filename>` and list it; returns its manifest entry.

        Same bytes already under that name (or one of its revisions): nothing is written and the
        existing entry is returned. `meta` must hold generated_at (aware datetime or ISO text) and
        may hold recipients, message_ids, config_sha256, data_sha256, code_version and more.
        """
        clash = sorted(set(meta) & set(_COMPUTED))
        if clash:
            raise DeliveryError(f"meta may not set {', '.join(clash)}: the archive computes them")
        if "generated_at" not in meta:
            raise DeliveryError("meta needs generated_at: expiry is counted from it")
        generated_at = _aware(meta["generated_at"], "generated_at").isoformat()
        stem, suffix = os.path.splitext(_component(filename, "file name"))
        folder = f"{_component(report, 'report')}/{_component(period, 'period')}"
        digest = sha256_hex(data)

        with self._locked(fcntl.LOCK_EX):
            self._refresh()
            revision = 1
            while True:
                relative = f"{folder}/{stem}{suffix if revision == 1 else f'.r{revision}{suffix}'}"
                path = self.root / relative
                listed = relative in self._current or relative in self._expired
                if not path.exists() and not listed:
                    self._write_new(path, data)
                    break
                if path.exists() and relative not in self._expired and _file_sha256(path) == digest:
                    if listed:
                        return dict(self._current[relative])
                    break  # written by a process that died before listing it: list it now
                revision += 1  # taken, now or in the past (an expired name is not reused)
            entry = {**_DEFAULTS, **meta, "generated_at": generated_at, "path": relative, "sha256": digest,
                     "size": len(data), "report": report, "period": period, "account_id": account_id}
            return self._append(entry)

    def expired_by(self, retention_years: int, now: datetime) -> list[str]:
        """Paths `expire` would delete now (nothing is changed)."""
        cutoff = _years_before(_aware(now, "now"), retention_years)
        with self._locked(fcntl.LOCK_SH):
            self._refresh()
            return [relative for relative, entry in sorted(self._current.items())
                    if _aware(entry["generated_at"], "generated_at") < cutoff]

    def expire(self, retention_years: int, now: datetime) -> list[str]:
        """Delete artifacts generated more than `retention_years` before `now`, recording each
        deletion in the manifest first; returns their paths (relative to the root)."""
        now = _aware(now, "now")
        cutoff = _years_before(now, retention_years)
        expired = []
        with self._locked(fcntl.LOCK_EX):
            self._refresh()
            for relative in self._expired:  # finish an expiry that was cut off after recording it
                (self.root / relative).unlink(missing_ok=True)
            for relative, entry in sorted(self._current.items()):
                if _aware(entry["generated_at"], "generated_at") >= cutoff:
                    continue
                self._append({"event": "expired", "path": relative, "sha256": entry["sha256"],
                              "generated_at": entry["generated_at"], "expired_at": now.isoformat(),
                              "retention_years": retention_years})
                (self.root / relative).unlink(missing_ok=True)
                expired.append(relative)
        return expired

    def head(self) -> str:
        """sha256 of the manifest's last line ("" when empty): anchor it to detect an edited last line."""
        with self._locked(fcntl.LOCK_SH):
            self._refresh()
            return self._head

    def entries(self) -> list[dict]:
        """Every manifest line, parsed, in order."""
        if not self.manifest.exists():
            return []
        with self._locked(fcntl.LOCK_SH):
            return [json.loads(line) for line in self.manifest.read_bytes().splitlines() if line]

    # ----------------------------------------------------------------------- checking

    def verify(self) -> list[Problem]:
        """Recompute every listed file's sha256 and the manifest's chain; find unlisted files."""
        if not self.root.exists():
            return []
        with self._locked(fcntl.LOCK_SH):
            raw = self.manifest.read_bytes() if self.manifest.exists() else b""
            problems: list[Problem] = []
            expected: dict[str, str] = {}
            expired: set[str] = set()
            lines = raw.split(b"\n")
            if lines[-1]:
                problems.append(Problem("chain_broken", MANIFEST, f"line {len(lines)} is incomplete (no newline)"))
            prev = ""
            for number, line in enumerate(lines[:-1], start=1):
                try:
                    entry = json.loads(line)
                    path = entry["path"]
                except (ValueError, KeyError, TypeError):
                    problems.append(Problem("chain_broken", MANIFEST, f"line {number} is not a manifest entry"))
                    prev = sha256_hex(line)
                    continue
                if entry.get("prev_sha256") != prev:
                    problems.append(Problem(
                        "chain_broken", path,
                        f"line {number}: prev_sha256 does not match line {number - 1}; "
                        "a line before it was edited, removed or inserted"))
                prev = sha256_hex(line)
                if entry.get("event") == "expired":
                    expected.pop(path, None)
                    expired.add(path)
                else:
                    expected[path] = entry.get("sha256")
                    expired.discard(path)

            for path, digest in expected.items():
                target = self.root / path
                if not target.is_file():
                    problems.append(Problem("missing", path, "listed in the manifest, not on disk"))
                elif _file_sha256(target) != digest:
                    problems.append(Problem("tampered", path, f"sha256 is not {digest} as listed"))
            for target in sorted(p for p in self.root.rglob("*") if p.is_file()):
                path = target.relative_to(self.root).as_posix()
                if path in (MANIFEST, LOCK) or path in expected:
                    continue
                why = "recorded as expired, yet present" if path in expired else "not in the manifest"
                problems.append(Problem("unlisted", path, why))
            return problems

    # ----------------------------------------------------------------------- helpers

    @contextmanager
    def _locked(self, mode: int) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / LOCK).open("a") as lock:
            fcntl.flock(lock.fileno(), mode)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _refresh(self) -> None:
        """Catch up with lines other processes appended (call with the lock held)."""
        size = self.manifest.stat().st_size if self.manifest.exists() else 0
        if size < self._read_upto:  # shrank: someone cut it; read it again from the start
            self._read_upto, self._head, self._current, self._expired = 0, "", {}, set()
        if size == self._read_upto:
            return
        with self.manifest.open("rb") as fh:
            fh.seek(self._read_upto)
            tail = fh.read(size - self._read_upto)
        if not tail.endswith(b"\n"):
            raise DeliveryError(f"{self.manifest} ends with an incomplete line (a write was cut off); "
                                "run verify and repair it before archiving more")
        for line in tail[:-1].split(b"\n"):
            try:
                self._index(json.loads(line))
            except (ValueError, KeyError, TypeError):
                raise DeliveryError(f"{self.manifest} holds a line that is not a manifest entry; "
                                    "run verify") from None
            self._head = sha256_hex(line)
        self._read_upto = size

    def _index(self, entry: dict) -> None:
        path = entry["path"]
        if entry.get("event") == "expired":
            self._current.pop(path, None)
            self._expired.add(path)
        else:
            self._current[path] = entry
            self._expired.discard(path)

    def _append(self, entry: dict) -> dict:
        entry = {**entry, "prev_sha256": self._head}
        line = _line(entry)
        created = not self.manifest.exists()
        with self.manifest.open("ab") as fh:
            fh.write(line + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        if created:
            _fsync_dir(self.root)
        self._read_upto += len(line) + 1
        self._head = sha256_hex(line)
        self._index(entry)
        return dict(entry)

    @staticmethod
    def _write_new(path: Path, data: bytes) -> None:
        """Write atomically and never over an existing file: a hard link fails if the name is taken."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.link(tmp, path)
        finally:
            os.unlink(tmp)
        _fsync_dir(path.parent)
