"""The audit archive: stored once, never overwritten, a hash-chained manifest that verify checks."""
from __future__ import annotations

import hashlib
import json
import multiprocessing
from datetime import datetime, timezone

import pytest

from reporter.deliver.archive import LOCK, MANIFEST, Archive, Problem
from reporter.errors import DeliveryError

GENERATED = datetime(2026, 5, 1, 7, 0, tzinfo=timezone.utc)
META = {
    "recipients": ["ann@example.com"],
    "message_ids": ["<0123456789abcdef0123456789abcdef@example.com>"],
    "generated_at": GENERATED,
    "config_sha256": "c" * 64,
    "data_sha256": "d" * 64,
    "code_version": "0.1.0",
}


def store(archive: Archive, data: bytes, filename="acme.pdf", period="2026-04", **meta) -> dict:
    return archive.store("account_review", period, "ACME", filename, data, {**META, **meta})


def manifest_lines(archive: Archive) -> list[bytes]:
    return archive.manifest.read_bytes().splitlines()


def kinds(problems: list[Problem]) -> list[tuple[str, str]]:
    return [(p.kind, p.path) for p in problems]


@pytest.fixture
def archive(tmp_path) -> Archive:
    return Archive(tmp_path / "archive")


# --------------------------------------------------------------------------- store

def test_store_writes_the_file_and_one_chained_manifest_line(archive):
    first = store(archive, b"%PDF one", tags=["q2"])
    second = store(archive, b"%PDF two", filename="globex.pdf")
    assert (archive.root / "account_review" / "2026-04" / "acme.pdf").read_bytes() == b"%PDF one"
    assert first == {
        "path": "account_review/2026-04/acme.pdf", "sha256": hashlib.sha256(b"%PDF one").hexdigest(), "size": 8,
        "report": "account_review", "period": "2026-04", "account_id": "ACME",
        "recipients": ["ann@example.com"], "message_ids": META["message_ids"],
        "generated_at": "2026-05-01T07:00:00+00:00", "config_sha256": "c" * 64, "data_sha256": "d" * 64,
        "code_version": "0.1.0", "tags": ["q2"], "prev_sha256": "",
    }
    lines = manifest_lines(archive)
    assert [json.loads(line) for line in lines] == [first, second]
    assert second["prev_sha256"] == hashlib.sha256(lines[0]).hexdigest()
    assert list(json.loads(lines[0])) == sorted(json.loads(lines[0]))  # sorted keys
    assert archive.head() == hashlib.sha256(lines[1]).hexdigest()
    assert archive.verify() == []


def test_the_same_bytes_again_are_not_written_again(archive):
    first = store(archive, b"%PDF same")
    assert store(archive, b"%PDF same", recipients=["someone@else.com"]) == first
    assert Archive(archive.root).store("account_review", "2026-04", "ACME", "acme.pdf", b"%PDF same", META) == first
    assert len(manifest_lines(archive)) == 1


def test_different_bytes_under_a_taken_name_become_revisions(archive):
    store(archive, b"%PDF v1")
    r2 = store(archive, b"%PDF v2")
    r3 = store(archive, b"%PDF v3")
    folder = archive.root / "account_review" / "2026-04"
    assert (r2["path"], r3["path"]) == ("account_review/2026-04/acme.r2.pdf", "account_review/2026-04/acme.r3.pdf")
    assert [(folder / n).read_bytes() for n in ("acme.pdf", "acme.r2.pdf", "acme.r3.pdf")] == [
        b"%PDF v1", b"%PDF v2", b"%PDF v3"]
    assert store(archive, b"%PDF v2") == r2  # an earlier revision's bytes: that revision
    assert len(manifest_lines(archive)) == 3
    assert archive.verify() == []


def test_a_stray_file_under_the_name_is_never_overwritten(archive):
    folder = archive.root / "account_review" / "2026-04"
    folder.mkdir(parents=True)
    (folder / "acme.pdf").write_bytes(b"not ours")
    entry = store(archive, b"%PDF ours")
    assert entry["path"] == "account_review/2026-04/acme.r2.pdf"
    assert (folder / "acme.pdf").read_bytes() == b"not ours"
    assert kinds(archive.verify()) == [("unlisted", "account_review/2026-04/acme.pdf")]


def test_a_file_written_but_never_listed_is_listed_on_the_next_store(archive):
    folder = archive.root / "account_review" / "2026-04"
    folder.mkdir(parents=True)
    (folder / "acme.pdf").write_bytes(b"%PDF same")  # a process died between writing and listing
    entry = store(archive, b"%PDF same")
    assert entry["path"] == "account_review/2026-04/acme.pdf"
    assert archive.verify() == []


@pytest.mark.parametrize("meta, message", [
    ({"sha256": "0" * 64}, "may not set sha256"),
    ({"path": "elsewhere", "prev_sha256": ""}, "may not set path, prev_sha256"),
])
def test_meta_cannot_forge_what_the_archive_computes(archive, meta, message):
    with pytest.raises(DeliveryError, match=message):
        store(archive, b"x", **meta)


def test_generated_at_is_required_and_aware(archive):
    with pytest.raises(DeliveryError, match="generated_at"):
        archive.store("r", "2026-04", None, "a.pdf", b"x", {})
    with pytest.raises(DeliveryError, match="time zone"):
        archive.store("r", "2026-04", None, "a.pdf", b"x", {"generated_at": "2026-05-01T07:00:00"})
    for value in (None, "last tuesday"):
        with pytest.raises(DeliveryError, match="not a date and time"):
            archive.store("r", "2026-04", None, "a.pdf", b"x", {"generated_at": value})


@pytest.mark.parametrize("report, period, filename", [
    ("../escape", "2026-04", "a.pdf"), ("r", "2026/04", "a.pdf"), ("r", "2026-04", ".hidden"),
    ("r", "2026-04", ""), ("r", "..", "a.pdf"), ("r", "2026-04", "a\\b.pdf"),
])
def test_names_that_would_leave_the_folder_are_refused(archive, report, period, filename):
    with pytest.raises(DeliveryError, match="archive path component"):
        archive.store(report, period, None, filename, b"x", META)
    assert not archive.manifest.exists()


# --------------------------------------------------------------------------- verify

@pytest.fixture
def three(archive):
    return [store(archive, f"%PDF {n}".encode(), filename=f"a{n}.pdf") for n in range(3)]


def test_verify_catches_a_flipped_byte(archive, three):
    target = archive.root / three[1]["path"]
    data = bytearray(target.read_bytes())
    data[2] ^= 0x01
    target.write_bytes(bytes(data))
    assert kinds(archive.verify()) == [("tampered", three[1]["path"])]


def test_verify_catches_a_missing_file(archive, three):
    (archive.root / three[0]["path"]).unlink()
    assert kinds(archive.verify()) == [("missing", three[0]["path"])]


def test_verify_catches_a_deleted_manifest_line(archive, three):
    lines = manifest_lines(archive)
    archive.manifest.write_bytes(lines[0] + b"\n" + lines[2] + b"\n")
    problems = archive.verify()
    assert kinds(problems) == [("chain_broken", three[2]["path"]), ("unlisted", three[1]["path"])]
    assert "line 2" in problems[0].detail


def test_verify_catches_an_edited_manifest_line(archive, three):
    lines = manifest_lines(archive)
    edited = json.loads(lines[1])
    edited["recipients"] = ["mallory@example.com"]
    lines[1] = json.dumps(edited, sort_keys=True, separators=(",", ":")).encode()
    archive.manifest.write_bytes(b"\n".join(lines) + b"\n")
    assert kinds(archive.verify()) == [("chain_broken", three[2]["path"])]


def test_verify_catches_a_rewritten_first_line(archive, three):
    lines = manifest_lines(archive)
    archive.manifest.write_bytes(b"\n".join(lines[1:]) + b"\n")  # the first line cut
    assert ("chain_broken", three[1]["path"]) in kinds(archive.verify())


def test_verify_catches_an_unlisted_file(archive, three):
    (archive.root / "account_review" / "2026-04" / "extra.pdf").write_bytes(b"planted")
    (archive.root / "loose.txt").write_bytes(b"planted")
    assert kinds(archive.verify()) == [("unlisted", "account_review/2026-04/extra.pdf"), ("unlisted", "loose.txt")]


def test_verify_ignores_the_manifest_and_its_lock(archive, three):
    assert (archive.root / LOCK).exists() and (archive.root / MANIFEST).exists()
    assert archive.verify() == []


def test_an_incomplete_last_line_is_reported_and_stops_further_storing(archive, three):
    with archive.manifest.open("ab") as fh:
        fh.write(b'{"path":"half')
    assert ("chain_broken", MANIFEST) in kinds(Archive(archive.root).verify())
    with pytest.raises(DeliveryError, match="incomplete line"):
        store(Archive(archive.root), b"%PDF more", filename="more.pdf")


# --------------------------------------------------------------------------- expire

def test_expire_deletes_old_artifacts_and_records_itself(archive):
    old = store(archive, b"%PDF 2018", filename="old.pdf", period="2018-04",
                generated_at=datetime(2018, 5, 1, tzinfo=timezone.utc))
    edge = store(archive, b"%PDF 2019", filename="edge.pdf", period="2019-04",
                 generated_at=datetime(2019, 5, 2, tzinfo=timezone.utc))
    new = store(archive, b"%PDF 2026", filename="new.pdf")
    now = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)

    assert archive.expire(7, now) == [old["path"]]
    assert not (archive.root / old["path"]).exists()
    assert (archive.root / edge["path"]).exists() and (archive.root / new["path"]).exists()
    lines = manifest_lines(archive)
    record = json.loads(lines[-1])
    assert record == {"event": "expired", "path": old["path"], "sha256": old["sha256"],
                      "generated_at": old["generated_at"], "expired_at": now.isoformat(), "retention_years": 7,
                      "prev_sha256": hashlib.sha256(lines[-2]).hexdigest()}
    assert archive.verify() == []
    assert Archive(archive.root).expire(7, now) == []  # nothing more, nothing recorded twice
    assert len(manifest_lines(archive)) == 4

    again = store(archive, b"%PDF 2018", filename="old.pdf", period="2018-04")
    assert again["path"] == "account_review/2018-04/old.r2.pdf"  # an expired name is not reused
    assert archive.verify() == []


def test_an_expiry_cut_off_before_deleting_is_finished_by_the_next(archive):
    old = store(archive, b"%PDF old", generated_at=datetime(2010, 1, 1, tzinfo=timezone.utc))
    kept = (archive.root / old["path"]).read_bytes()
    archive.expire(7, datetime(2026, 5, 1, tzinfo=timezone.utc))
    (archive.root / old["path"]).write_bytes(kept)  # as if the process died before unlinking
    assert kinds(archive.verify()) == [("unlisted", old["path"])]
    assert Archive(archive.root).expire(7, datetime(2026, 5, 1, tzinfo=timezone.utc)) == []
    assert archive.verify() == []


# --------------------------------------------------------------------------- two processes

def _store_many(root: str, worker: int, count: int) -> None:
    archive = Archive(root)
    for n in range(count):
        archive.store("account_review", "2026-04", f"A{n}", f"w{worker}-{n}.pdf", f"{worker}/{n}".encode() * 100,
                      {**META, "generated_at": GENERATED.isoformat()})


def test_two_processes_appending_keep_one_unbroken_chain(archive):
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_store_many, args=(str(archive.root), w, 25)) for w in range(2)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=60)
    assert [p.exitcode for p in workers] == [0, 0]
    assert len(manifest_lines(archive)) == 50
    assert archive.verify() == []
