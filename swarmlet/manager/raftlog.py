"""Crash-safe files for a manager's Raft state: the journal (the write-ahead
log of Raft entries), the term file (current term, vote, commit index) and the
snapshot (the state machine at one applied index).

pysyncobj 0.3.17 writes its journal into an mmap that is never synced, keeps
term and vote without fsync, and writes snapshots without fsync before the
rename: a power cut loses acknowledged writes (issue 14). These files replace
its own; `raftnode.DurableSyncObj` plugs them in. What makes them safe:

- Journal records are appended only by `DurableJournal.sync()`: one write and
  one fdatasync for everything added since the previous sync (group commit).
  The Raft node calls it before it counts its own entries for a commit and
  before a follower acknowledges an append (raftnode.py).
- Every record carries a checksum of its header and of its body. At start-up
  a torn tail (the last write cut short by the power cut) is truncated; any
  other damage refuses to start (`RaftStateError`), naming the file.
- The term file and the snapshot are replaced atomically: written to a
  temporary file, fsync'd, renamed, directory fsync'd. The journal drops the
  entries a snapshot covers only after that (a rewrite of its own, made the
  same way).
- Writes use plain write(2), never mmap: a full disk is an OSError
  (`RaftDiskError`), not a SIGBUS.

- Nothing in them is plaintext (issue 13): every entry's command, the term
  file and the snapshot are encrypted with the manager's data encryption key
  (swarmlet/atrest.py, AES-256-GCM). The cluster object in these files holds
  the CA key, the join tokens and the Raft secret; a copy of the directory
  without the key (which autolock keeps wrapped) reveals none of them.

File formats (little endian; version 2, which encrypts; version 1 files, in
the clear, are read once and rewritten encrypted):

  journal   header: b"SWRLWAL1", u32 format version, u32 crc32 of the 12 bytes
            before it; then records: b"\\xf3\\x9a\\x5c\\x17", u32 body length,
            u64 write number, u32 crc32 of the body, u32 crc32 of the 20 header
            bytes before it; body: u64 index, u64 term, the entry's command
            bytes (pysyncobj's) encrypted with the index and term as associated
            data. Records of one sync share their write number, which only grows.
            Checksums cover the ciphertext: a torn tail is found without the key.
  term      b"SWRLTRM2" + the encrypted JSON {"format": "swarmlet-raft-term",
            "version": 1, "term", "vote", "commit"} (v1: "<crc32, 8 hex digits>
            <JSON>\\n").
  snapshot  b"SWRLSNP2", u64 payload length, u32 crc32 of the payload, u32
            crc32 of the 20 bytes before it; payload: an encrypted pickle
            (protocol 4) of {"last", "prev", "cluster", "consumers"}. Pickle,
            like pysyncobj's own transport: keep the directory root-only.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import pickle
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pysyncobj.journal import Journal

from swarmlet import errors
from swarmlet.atrest import DataKey, SealError
from swarmlet.compat import restore_inet_ntop
from swarmlet.fsutil import fsync_dir as fsync_dir  # re-exported: raftnode and tests use raftlog.fsync_dir
from swarmlet.fsutil import write_atomic

restore_inet_ntop()  # importing pysyncobj breaks socket.inet_ntop (see compat.py)

log = logging.getLogger(__name__)

Entry = tuple[bytes, int, int]  # (command, index, term), as pysyncobj keeps them

JOURNAL_NAME = "wal"
TERM_NAME = "term"
SNAPSHOT_NAME = "snapshot"

_FILE_MAGIC = b"SWRLWAL1"
_FILE_VERSION = 2  # 2: encrypted commands; 1 (plaintext) is read and converted
_FILE_HEADER = struct.Struct("<8sII")
_REC_MAGIC = b"\xf3\x9a\x5c\x17"
_REC_HEADER = struct.Struct("<4sIQII")
_REC_HEADER_CHECKED = _REC_HEADER.size - 4  # the header crc covers the bytes before it
_BODY_PREFIX = struct.Struct("<QQ")
_SNAP_MAGIC = b"SWRLSNP2"
_SNAP_MAGIC_V1 = b"SWRLSNP1"  # plaintext payload: read once, then rewritten
_TERM_MAGIC = b"SWRLTRM2"
_AAD_SNAPSHOT = b"swarmlet-raft-snapshot"
_AAD_TERM = b"swarmlet-raft-term"
_SNAP_HEADER = struct.Struct("<8sQII")
_SNAP_HEADER_CHECKED = _SNAP_HEADER.size - 4
_TERM_FORMAT = "swarmlet-raft-term"
# Sector size assumed for torn-write detection: a disk writes a 512-byte
# sector whole or not at all; a sector never written reads as zeros.
_SECTOR = 512

RECOVERY = (
    "To recover, rejoin this host from the other managers: on a healthy manager run "
    "'swarmlet node demote NODE' and 'swarmlet node rm --force NODE'; on this host stop the daemon, "
    "move the state directory {state_dir} aside, start the daemon again and 'swarmlet join' with a "
    "manager token. If no manager can start, restore the last backup with 'swarmlet cluster restore' "
    'on a fresh host. See docs/operations.md, "Durability".'
)


class RaftStateError(errors.FailedPrecondition):
    """The Raft files on disk cannot be trusted: the manager refuses to start
    rather than run as a voter with state it does not really have."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        state_dir = os.path.dirname(os.path.dirname(os.path.abspath(path)))
        super().__init__(
            f"raft state file {path}: {problem}. This manager will not start with it. " + RECOVERY.format(state_dir=state_dir)
        )


class RaftDiskError(errors.Unavailable):
    """Writing the Raft state failed (a full disk, an I/O error): the manager
    stops taking part in Raft, since it could no longer keep a promise."""

    def __init__(self, path: str, err: OSError) -> None:
        self.path = path
        self.errno = err.errno
        what = "the disk is full" if err.errno in (errno.ENOSPC, errno.EDQUOT) else f"I/O error: {err.strerror or err}"
        super().__init__(
            f"raft state file {path}: write failed ({what}). This manager has stopped taking part in Raft "
            "(it no longer votes, leads or acknowledges entries); the others carry on if they are a majority. "
            "Free space or fix the disk under the state directory, then restart the daemon."
        )


# ---------------------------------------------------------------------------
# small file-system helpers


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


# One way to write a whole file durably, shared by every file swarmlet keeps.
write_durably = write_atomic


def _crc(data: bytes | memoryview) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


# ---------------------------------------------------------------------------
# journal records


def _record_aad(idx: int, term: int) -> bytes:
    # Binds a record's ciphertext to its place in the log.
    return b"swarmlet-raft-entry" + _BODY_PREFIX.pack(idx, term)


def _encode_records(entries: list[Entry], write_no: int, key: DataKey) -> tuple[bytes, list[int]]:
    """The bytes of `entries` as records (commands encrypted), and each record's length."""
    parts: list[bytes] = []
    sizes: list[int] = []
    for command, idx, term in entries:
        plain = command if isinstance(command, bytes) else bytes(command)
        body = _BODY_PREFIX.pack(idx, term) + key.encrypt(plain, _record_aad(idx, term))
        head = struct.pack("<4sIQI", _REC_MAGIC, len(body), write_no, _crc(body))
        head += struct.pack("<I", _crc(head))
        parts.append(head)
        parts.append(body)
        sizes.append(len(head) + len(body))
    return b"".join(parts), sizes


@dataclass
class _Record:
    entry: Entry
    write_no: int
    end: int


@dataclass
class _Bad:
    # "torn": the bytes look like a write that never reached the disk (cut by
    # the end of the file, or a never-written zero sector); "damaged": anything
    # else (a checksum that fails on bytes that were written).
    kind: str
    what: str


def _zero(data: bytes, start: int, end: int) -> bool:
    return start < end and data.count(0, start, end) == end - start


def _unwritten_from(data: bytes, pos: int) -> bool:
    """True if the bytes from pos look never written: zeros to the end of the
    sector (and at least a record header's worth, or up to the end of the file)."""
    end = min(len(data), max(pos + _REC_HEADER.size, (pos // _SECTOR + 1) * _SECTOR))
    return _zero(data, pos, end)


def _has_unwritten_sector(data: bytes, start: int, end: int) -> bool:
    """True if a sector-aligned piece of [start, end) is all zeros."""
    b = -(-start // _SECTOR) * _SECTOR
    while b < end:
        if _zero(data, b, min(b + _SECTOR, end)):
            return True
        b += _SECTOR
    return False


def _parse_record(data: bytes, pos: int) -> _Record | _Bad:
    size = len(data)
    if size - pos < _REC_HEADER.size:
        return _Bad("torn", "a record header cut off by the end of the file")
    magic, length, write_no, body_crc, head_crc = _REC_HEADER.unpack_from(data, pos)
    if magic != _REC_MAGIC or _crc(memoryview(data)[pos : pos + _REC_HEADER_CHECKED]) != head_crc:
        if _unwritten_from(data, pos):
            return _Bad("torn", "zeros where a record should start (never written)")
        return _Bad("damaged", "a record header with a wrong magic number or checksum")
    start = pos + _REC_HEADER.size
    end = start + length
    if end > size:
        return _Bad("torn", "a record cut off by the end of the file")
    if length < _BODY_PREFIX.size:
        return _Bad("damaged", f"a record of impossible length {length}")
    if _crc(memoryview(data)[start:end]) != body_crc:
        if _has_unwritten_sector(data, start, end):
            return _Bad("torn", "a record with a never-written (zero) sector")
        return _Bad("damaged", "a record whose checksum does not match its contents")
    idx, term = _BODY_PREFIX.unpack_from(data, start)
    return _Record((bytes(data[start + _BODY_PREFIX.size : end]), idx, term), write_no, end)


def _intact_after(data: bytes, pos: int) -> list[int]:
    """Write numbers of intact records found anywhere after pos."""
    found: list[int] = []
    i = data.find(_REC_MAGIC, pos)
    while i != -1:
        r = _parse_record(data, i)
        if isinstance(r, _Record):
            found.append(r.write_no)
            i = data.find(_REC_MAGIC, r.end)
        else:
            i = data.find(_REC_MAGIC, i + 1)
    return found


@dataclass
class JournalScan:
    entries: list[Entry]
    ends: list[int]  # file offset just after each record
    last_write_no: int
    good_size: int  # bytes up to the end of the last good record
    torn: str | None  # what was cut off (None: the file was clean)
    version: int = _FILE_VERSION  # 1: plaintext, to be rewritten encrypted


def scan_journal(path: str, data: bytes, key: DataKey | None = None) -> JournalScan:
    """Parse a journal file's bytes. A torn tail is reported (the caller
    truncates it); any other damage raises RaftStateError. Commands of a
    version 2 file are decrypted with `key` (None: left as stored, for tools
    that only check the structure).

    A bad record is a torn tail when it looks unwritten (cut off by the end
    of the file, or holding a zero sector) and every intact record after it
    belongs to one single write, no older than the last good record: only the
    last write, never fsync'd and so never acknowledged, can be torn."""
    if len(data) < _FILE_HEADER.size:
        raise RaftStateError(path, f"the file is {len(data)} bytes long, shorter than a journal header")
    magic, version, crc = _FILE_HEADER.unpack_from(data, 0)
    if magic != _FILE_MAGIC or _crc(data[: _FILE_HEADER.size - 4]) != crc:
        raise RaftStateError(path, "not a swarmlet Raft journal (bad header)")
    if version not in (1, _FILE_VERSION):
        raise RaftStateError(path, f"journal format version {version} is not supported (this swarmlet writes {_FILE_VERSION})")
    entries: list[Entry] = []
    ends: list[int] = []
    last_write = 0
    pos = _FILE_HEADER.size
    while pos < len(data):
        rec = _parse_record(data, pos)
        if isinstance(rec, _Bad):
            break
        command, idx, term = rec.entry
        if version == _FILE_VERSION and key is not None:
            try:
                rec.entry = (key.decrypt(command, _record_aad(idx, term)), idx, term)
            except SealError:
                raise RaftStateError(
                    path, f"the record of entry {idx} at byte {pos} does not decrypt with this manager's data key"
                ) from None
        if entries:
            prev_idx, prev_term = entries[-1][1], entries[-1][2]
            if idx != prev_idx + 1:
                raise RaftStateError(path, f"entry {idx} follows entry {prev_idx} at byte {pos}")
            if term < prev_term:
                raise RaftStateError(path, f"entry {idx} has term {term}, lower than the term {prev_term} before it")
            if rec.write_no < last_write:
                raise RaftStateError(path, f"records out of order at byte {pos}")
        entries.append(rec.entry)
        ends.append(rec.end)
        last_write = rec.write_no
        pos = rec.end
    else:
        return JournalScan(entries, ends, last_write, pos, None, version)
    assert isinstance(rec, _Bad)
    if rec.kind != "torn":
        raise RaftStateError(path, f"damaged at byte {pos}: {rec.what}")
    later = set(_intact_after(data, pos + 1))
    if len(later) > 1 or (later and entries and min(later) < last_write):
        raise RaftStateError(
            path, f"damaged at byte {pos} ({rec.what}), with intact records of earlier or several writes after it"
        )
    return JournalScan(entries, ends, last_write, pos, f"{len(data) - pos} bytes at byte {pos}: {rec.what}", version)


# ---------------------------------------------------------------------------
# term file


@dataclass
class TermState:
    term: int = 0
    vote: str | None = None
    commit: int = 1


def read_term(path: str, key: DataKey) -> TermState | None:
    """The term file's content; None if there is none; RaftStateError if it is
    damaged or does not decrypt with `key`."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    if raw.startswith(_TERM_MAGIC):
        try:
            body = key.decrypt(memoryview(raw)[len(_TERM_MAGIC) :], _AAD_TERM)
        except SealError:
            raise RaftStateError(path, "damaged, or encrypted with another data key") from None
    else:  # version 1: plaintext with a checksum
        head, sep, body = raw.partition(b" ")
        try:
            if not sep or not body.endswith(b"\n") or int(head, 16) != _crc(body[:-1]):
                raise ValueError("checksum")
        except ValueError:
            raise RaftStateError(path, "damaged (checksum or format mismatch)") from None
    try:
        doc = json.loads(body)
        if doc.get("format") != _TERM_FORMAT or doc.get("version") != 1:
            raise ValueError("format")
        vote = doc["vote"]
        state = TermState(term=int(doc["term"]), vote=None if vote is None else str(vote), commit=int(doc["commit"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise RaftStateError(path, "damaged (checksum or format mismatch)") from None
    if state.term < 0 or state.commit < 0:
        raise RaftStateError(path, "damaged (negative term or commit index)")
    return state


def write_term(path: str, state: TermState, key: DataKey) -> None:
    doc = {"format": _TERM_FORMAT, "version": 1, "term": state.term, "vote": state.vote, "commit": state.commit}
    body = json.dumps(doc, sort_keys=True).encode()
    write_durably(path, _TERM_MAGIC + key.encrypt(body, _AAD_TERM))


# ---------------------------------------------------------------------------
# snapshot file


def encode_snapshot(payload: dict[str, Any], key: DataKey) -> bytes:
    body = key.encrypt(pickle.dumps(payload, protocol=4), _AAD_SNAPSHOT)
    head = struct.pack("<8sQI", _SNAP_MAGIC, len(body), _crc(body))
    return head + struct.pack("<I", _crc(head)) + body


def write_snapshot_file(path: str, payload: dict[str, Any], key: DataKey) -> None:
    """Write `path` (a temporary name: pysyncobj renames it) and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        _write_all(fd, encode_snapshot(payload, key))
        os.fsync(fd)
    finally:
        os.close(fd)


def snapshot_is_plaintext(path: str) -> bool:
    """True for a version 1 snapshot (written before encryption at rest)."""
    with open(path, "rb") as f:
        return f.read(len(_SNAP_MAGIC_V1)) == _SNAP_MAGIC_V1


def read_snapshot_file(path: str, key: DataKey) -> dict[str, Any]:
    """The snapshot's payload; RaftStateError if the file is damaged or does
    not decrypt with `key`."""
    with open(path, "rb") as f:
        data = f.read()
    return decode_snapshot(path, data, key)


def encode_transfer(payload: dict[str, Any]) -> bytes:
    """A snapshot as it travels to a follower (pysyncobj's snapshot
    transmission): the version 1 layout, payload in the clear. It travels
    inside the Raft transport's encryption, and each manager's file is
    encrypted with its own data key, which the others do not have."""
    body = pickle.dumps(payload, protocol=4)
    head = struct.pack("<8sQI", _SNAP_MAGIC_V1, len(body), _crc(body))
    return head + struct.pack("<I", _crc(head)) + body


def decode_snapshot(path: str, data: bytes, key: DataKey | None) -> dict[str, Any]:
    """A snapshot's payload from its bytes: the encrypted file form (with
    `key`) or the transfer/version 1 form. RaftStateError names `path`."""
    if len(data) < _SNAP_HEADER.size:
        raise RaftStateError(path, f"the file is {len(data)} bytes long, shorter than a snapshot header")
    magic, length, body_crc, head_crc = _SNAP_HEADER.unpack_from(data, 0)
    if magic not in (_SNAP_MAGIC, _SNAP_MAGIC_V1) or _crc(data[:_SNAP_HEADER_CHECKED]) != head_crc:
        raise RaftStateError(path, "not a swarmlet Raft snapshot (bad header)")
    body: bytes | memoryview = memoryview(data)[_SNAP_HEADER.size :]
    if len(body) != length:
        raise RaftStateError(path, f"truncated or extended: {len(body)} payload bytes, the header says {length}")
    if _crc(body) != body_crc:
        raise RaftStateError(path, "damaged (payload checksum mismatch)")
    if magic == _SNAP_MAGIC:
        if key is None:
            raise RaftStateError(path, "an encrypted snapshot where a transfer was expected")
        try:
            body = key.decrypt(body, _AAD_SNAPSHOT)
        except SealError:
            raise RaftStateError(path, "the payload does not decrypt with this manager's data key") from None
    try:
        payload = pickle.loads(body)
        last, prev = payload["last"], payload["prev"]
        ok = (
            isinstance(payload["consumers"], list)
            and isinstance(payload["cluster"], list)
            and all(isinstance(e, tuple) and len(e) == 3 for e in (last, prev))
            and last[1] == prev[1] + 1
        )
    except Exception as e:  # a checksum-correct payload that does not decode: written by something else
        raise RaftStateError(path, f"the payload does not decode ({type(e).__name__})") from None
    if not ok:
        raise RaftStateError(path, "the payload is not a swarmlet Raft snapshot")
    return dict(payload)


def _term_encrypted(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(len(_TERM_MAGIC)) == _TERM_MAGIC


# ---------------------------------------------------------------------------
# the journal pysyncobj uses


class DurableJournal(Journal):  # type: ignore[misc]  # pysyncobj has no type hints
    """pysyncobj's Journal interface over the files above.

    pysyncobj calls add/delete/clear on its tick thread and reads entries by
    position; those only change the list in memory. `sync()` (also on the
    tick thread) makes the file equal to that list: usually one append and one
    fdatasync; a rewrite when the head was dropped (compaction, a snapshot
    installed); a truncation when a new leader replaced entries.
    """

    def __init__(self, raft_dir: str, key: DataKey) -> None:
        self.path = os.path.join(raft_dir, JOURNAL_NAME)
        self.term_path = os.path.join(raft_dir, TERM_NAME)
        self._dir = raft_dir
        self._key = key
        self._failure: RaftDiskError | None = None
        # Called when the commit index moves past what is on disk; the Raft node
        # answers True on the leader, whose own copy must be durable before it
        # counts toward a commit (raftnode.py).
        self.sync_on_commit: Callable[[], bool] = lambda: True
        self.fsyncs = 0  # fdatasync calls on the journal (tests count group commits)
        self.torn: str | None = None  # what start-up cut off, if anything
        for name in (JOURNAL_NAME, TERM_NAME, SNAPSHOT_NAME):
            # Left by a crash mid-replace; the real file is intact.
            for leftover in (name + ".tmp", name + ".1.tmp"):
                try:
                    os.unlink(os.path.join(raft_dir, leftover))
                except FileNotFoundError:
                    pass
        term = read_term(self.term_path, key)
        self._term = term or TermState()
        self._term_dirty = False
        if os.path.exists(self.path):
            with open(self.path, "rb") as f:
                data = f.read()
            scan = scan_journal(self.path, data, key)
            if scan.torn is not None:
                log.warning("raft journal %s: cutting off a torn tail (%s), left by a crash mid-write", self.path, scan.torn)
                self.torn = scan.torn
                fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.ftruncate(fd, scan.good_size)
                    os.fsync(fd)
                finally:
                    os.close(fd)
        else:
            # The journal is created at a manager's first start, before any
            # term or snapshot is written: without it they tell of a lost log.
            if term is not None or os.path.exists(os.path.join(raft_dir, SNAPSHOT_NAME)):
                raise RaftStateError(self.path, "missing, while the term file or a snapshot shows this manager took part in Raft")
            write_durably(self.path, self._file_header())
            scan = JournalScan([], [], 0, _FILE_HEADER.size, None)
        if term is None and any(e[2] > 0 for e in scan.entries[-1:]):
            raise RaftStateError(self.term_path, "missing, while the journal holds entries of later terms")
        if scan.entries and self._term.term < scan.entries[-1][2]:
            raise RaftStateError(
                self.term_path, f"term {self._term.term} is older than the journal's last entry (term {scan.entries[-1][2]})"
            )
        self._entries: list[Entry] = list(scan.entries)
        self._disk: list[Entry] = scan.entries  # what the file holds, record by record
        self._ends: list[int] = scan.ends
        self._write_no = scan.last_write_no + 1
        self._check_from = len(self._entries)  # first position that may differ from the file
        self._head_changed = False
        self._dirty = False
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        if scan.version != _FILE_VERSION or (term is not None and not _term_encrypted(self.term_path)):
            # Written before encryption at rest: rewrite both encrypted now,
            # so no plaintext stays behind.
            log.info("raft journal %s: encrypting files written in the clear by an older swarmlet", self.path)
            self._head_changed = self._dirty = True
            self.sync()
            self._store_term()

    @staticmethod
    def _file_header() -> bytes:
        head = struct.pack("<8sI", _FILE_MAGIC, _FILE_VERSION)
        return head + struct.pack("<I", _crc(head))

    @classmethod
    def file_bytes(cls, entries: list[Entry], write_no: int, key: DataKey) -> bytes:
        """A whole journal file holding `entries` (for conversions)."""
        return cls._file_header() + _encode_records(entries, write_no, key)[0]

    # ---- state for the Raft node

    @property
    def dirty(self) -> bool:
        """True while entries exist that are not yet on disk."""
        return self._dirty

    @property
    def failure(self) -> RaftDiskError | None:
        return self._failure

    def _check(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _fail(self, path: str, err: OSError) -> RaftDiskError:
        self._failure = RaftDiskError(path, err)
        return self._failure

    # ---- pysyncobj's Journal interface

    def add(self, command: bytes, idx: int, term: int) -> None:
        self._check()
        self._entries.append((command, idx, term))
        self._dirty = True

    def clear(self) -> None:
        self._check()
        self._entries = []
        self._head_changed = True
        self._dirty = True

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        self._check()
        del self._entries[entryFrom:]
        self._check_from = min(self._check_from, entryFrom)
        self._dirty = True

    def deleteEntriesTo(self, entryTo: int) -> None:
        self._check()
        self._entries = self._entries[entryTo:]
        self._head_changed = True
        self._dirty = True

    def __getitem__(self, item: Any) -> Any:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def _destroy(self) -> None:
        if self._fd < 0:
            return
        try:
            if self._failure is None:
                self.sync()
                if self._term_dirty:
                    self._store_term()
        except RaftDiskError:
            pass  # already logged by the Raft node
        finally:
            os.close(self._fd)
            self._fd = -1

    def flush(self) -> None:
        self.sync()

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        self._check()
        self._term.commit = raftCommitIndex
        self._term_dirty = True
        # The leader calls this right before it applies (and acknowledges)
        # newly committed entries: they must be on its own disk first.
        if self._dirty and self.sync_on_commit():
            self.sync()

    def getRaftCommitIndex(self) -> int:
        # A commit index saved before a crash may be past what the journal
        # kept (a follower's torn tail): never beyond the last entry.
        last = self._entries[-1][1] if self._entries else 1
        return max(1, min(self._term.commit, last))

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:
        # Raft: term and vote are durable before any message that reflects them.
        self._check()
        self._term.term = term
        self._term.vote = None if votedForNodeId is None else str(votedForNodeId)
        self._store_term()

    def getCurrentTerm(self) -> int:
        return self._term.term

    def getVotedForNodeId(self) -> str | None:
        return self._term.vote

    def onOneSecondTimer(self) -> None:
        # The commit index is only a hint for a faster restart: saved once a second.
        if self._term_dirty and self._failure is None:
            self._store_term()

    def _store_term(self) -> None:
        try:
            write_term(self.term_path, self._term, self._key)
        except OSError as e:
            raise self._fail(self.term_path, e) from e
        self._term_dirty = False

    # ---- making it durable

    def sync(self) -> None:
        """Make the file hold exactly the entries in memory, durably. Raises
        RaftDiskError (and refuses every later change) if the disk fails."""
        if not self._dirty:
            return
        self._check()
        try:
            if self._head_changed:
                self._rewrite()
            else:
                self._sync_tail()
        except OSError as e:
            raise self._fail(self.path, e) from e
        self._dirty = False
        self._head_changed = False
        self._check_from = len(self._entries)

    def _sync_tail(self) -> None:
        disk, entries = self._disk, self._entries
        i, n = self._check_from, min(len(disk), len(entries))
        # Entries deleted and added back unchanged (pysyncobj does this when
        # pipelined appends overlap) stay where they are on disk.
        while i < n and (entries[i] is disk[i] or entries[i] == disk[i]):
            i += 1
        if i < len(disk):
            # A new leader replaced entries from i on: cut them off, durably,
            # before anything new lands where they were (else a crash could
            # leave new records followed by stale ones).
            os.ftruncate(self._fd, self._ends[i - 1] if i else _FILE_HEADER.size)
            os.fdatasync(self._fd)
            self.fsyncs += 1
            del disk[i:]
            del self._ends[i:]
        if len(entries) > len(disk):
            new = entries[len(disk) :]
            data, sizes = _encode_records(new, self._write_no, self._key)
            self._write_no += 1
            _write_all(self._fd, data)
            os.fdatasync(self._fd)
            self.fsyncs += 1
            end = self._ends[-1] if self._ends else _FILE_HEADER.size
            for s in sizes:
                end += s
                self._ends.append(end)
            disk.extend(new)

    def _rewrite(self) -> None:
        # Whatever was renamed into this directory before (the snapshot that
        # covers the entries being dropped) must be durable first.
        fsync_dir(self._dir)
        data, sizes = _encode_records(self._entries, self._write_no, self._key)
        self._write_no += 1
        head = self._file_header()
        write_durably(self.path, head + data)
        self.fsyncs += 1
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._disk = list(self._entries)
        end = len(head)
        self._ends = []
        for s in sizes:
            end += s
            self._ends.append(end)
