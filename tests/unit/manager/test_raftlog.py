"""The Raft files on their own (swarmlet/manager/raftlog.py): what reaches the
disk, what a crash leaves, what start-up accepts and what it refuses.

A "crash" here is a copy of the files taken while the journal is open (what
the process had written with write(2); nothing else reaches the file: entries
only land there through sync()). Damage is done to such copies byte by byte.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
from pathlib import Path

import pytest

from swarmlet.atrest import DataKey
from swarmlet.manager import raftlog
from swarmlet.manager.raftlog import DurableJournal, RaftDiskError, RaftStateError

KEY = DataKey(b"k" * 32)


def cmds(start: int, n: int, term: int = 1, size: int = 16) -> list[tuple[bytes, int, int]]:
    return [((b"c%06d-" % i).ljust(size, b"x"), i, term) for i in range(start, start + n)]


def journal_with(d: Path, *writes: list[tuple[bytes, int, int]]) -> DurableJournal:
    """A journal in d holding `writes`, each made durable by its own sync."""
    d.mkdir(exist_ok=True)
    j = DurableJournal(str(d), KEY)
    j.setCurrentTerm(max(e[2] for w in writes for e in w), None)
    for w in writes:
        for e in w:
            j.add(*e)
        j.sync()
    return j


def crash_copy(src: Path, dst: Path) -> Path:
    """The raft dir as a crash would leave it: the files as they are now."""
    shutil.copytree(src, dst)
    return dst


def record_offsets(path: Path) -> list[int]:
    """Start offset of every record in a journal file."""
    data = path.read_bytes()
    scan = raftlog.scan_journal(str(path), data)
    return [raftlog._FILE_HEADER.size, *scan.ends[:-1]]


def test_synced_entries_survive_a_crash_and_unsynced_ones_never_reach_the_file(tmp_path):
    j = journal_with(tmp_path / "a", cmds(1, 10))
    for e in cmds(11, 3):
        j.add(*e)  # not synced: pysyncobj has not been told they are durable
    copy = crash_copy(tmp_path / "a", tmp_path / "b")
    back = DurableJournal(str(copy), KEY)
    assert back[:] == cmds(1, 10)
    assert back.getCurrentTerm() == 1
    assert back.torn is None


def test_one_fsync_covers_everything_added_since_the_last(tmp_path):
    j = journal_with(tmp_path / "a", cmds(1, 1))
    before = j.fsyncs
    for e in cmds(2, 500):
        j.add(*e)
    j.sync()
    j.sync()  # nothing new: no fsync
    assert j.fsyncs == before + 1
    assert DurableJournal(str(crash_copy(tmp_path / "a", tmp_path / "b")), KEY)[:] == cmds(1, 501)


def test_entries_resent_unchanged_stay_on_disk_untouched(tmp_path):
    # pysyncobj deletes and re-adds entries when pipelined appends overlap.
    j = journal_with(tmp_path / "a", cmds(1, 10))
    wal = tmp_path / "a" / raftlog.JOURNAL_NAME
    before, fsyncs = wal.read_bytes(), j.fsyncs
    j.deleteEntriesFrom(4)
    for e in cmds(5, 6):
        j.add(*e)
    j.sync()
    assert wal.read_bytes() == before and j.fsyncs == fsyncs


def test_entries_a_new_leader_replaced_are_cut_before_the_new_ones_land(tmp_path):
    j = journal_with(tmp_path / "a", cmds(1, 10))
    j.setCurrentTerm(2, "10.0.0.2:4243")
    j.deleteEntriesFrom(5)  # entries 6.. conflict with the new leader's
    new = cmds(6, 2, term=2, size=40)
    for e in new:
        j.add(*e)
    j.sync()
    back = DurableJournal(str(crash_copy(tmp_path / "a", tmp_path / "b")), KEY)
    assert back[:] == cmds(1, 5) + new
    assert back.getVotedForNodeId() == "10.0.0.2:4243"


def test_compaction_rewrites_the_journal_from_the_snapshot_on(tmp_path):
    j = journal_with(tmp_path / "a", cmds(1, 10))
    j.deleteEntriesTo(6)
    j.sync()
    assert DurableJournal(str(crash_copy(tmp_path / "a", tmp_path / "b")), KEY)[:] == cmds(7, 4)
    assert not list((tmp_path / "a").glob("*.tmp"))


def test_a_tail_cut_short_by_the_crash_is_truncated(tmp_path):
    journal_with(tmp_path / "a", cmds(1, 9), cmds(10, 1, size=300))
    wal = tmp_path / "a" / raftlog.JOURNAL_NAME
    last = record_offsets(wal)[-1]
    with open(wal, "r+b") as f:
        f.truncate(last + 100)  # the last write reached the disk only in part
    j = DurableJournal(str(tmp_path / "a"), KEY)
    assert j[:] == cmds(1, 9)
    assert j.torn and "cut off by the end of the file" in j.torn
    assert wal.stat().st_size == last  # cut on disk too
    j.add(*cmds(10, 1)[0])
    j.sync()
    assert DurableJournal(str(crash_copy(tmp_path / "a", tmp_path / "b")), KEY)[:] == cmds(1, 10)


def test_never_written_sectors_in_the_last_write_are_a_torn_tail(tmp_path):
    # The last write holds 3 records; its middle one spans sectors that never
    # reached the disk (they read as zeros), the record after it did.
    journal_with(tmp_path / "a", cmds(1, 5), cmds(6, 1, size=100) + cmds(7, 1, size=2000) + cmds(8, 1, size=100))
    wal = tmp_path / "a" / raftlog.JOURNAL_NAME
    starts = record_offsets(wal)
    data = bytearray(wal.read_bytes())
    hole_start = -(-(starts[6] + 64) // 512) * 512
    data[hole_start : hole_start + 1024] = bytes(1024)
    wal.write_bytes(bytes(data))
    j = DurableJournal(str(tmp_path / "a"), KEY)
    assert j[:] == cmds(1, 5) + cmds(6, 1, size=100)
    assert j.torn and "never-written" in j.torn


def test_zeros_where_the_next_record_should_start_are_a_torn_tail(tmp_path):
    journal_with(tmp_path / "a", cmds(1, 5))
    wal = tmp_path / "a" / raftlog.JOURNAL_NAME
    with open(wal, "ab") as f:
        f.write(bytes(4096))  # the file grew, its data never arrived
    assert DurableJournal(str(tmp_path / "a"), KEY)[:] == cmds(1, 5)


def damaged(tmp_path: Path, change) -> RaftStateError:
    journal_with(tmp_path / "a", cmds(1, 5), cmds(6, 5), cmds(11, 5))
    wal = tmp_path / "a" / raftlog.JOURNAL_NAME
    data = bytearray(wal.read_bytes())
    change(data, record_offsets(wal))
    wal.write_bytes(bytes(data))
    with pytest.raises(RaftStateError) as err:
        DurableJournal(str(tmp_path / "a"), KEY)
    msg = str(err.value)
    assert str(wal) in msg, msg
    assert "demote" in msg and "join" in msg, "the message says how to recover"
    return err.value


def test_a_flipped_byte_in_the_middle_is_refused(tmp_path):
    def flip(data: bytearray, starts: list[int]) -> None:
        data[starts[6] + 30] ^= 0x40

    assert "checksum" in damaged(tmp_path, flip).problem


def test_garbage_over_the_header_is_refused(tmp_path):
    def garbage(data: bytearray, starts: list[int]) -> None:
        data[0:512] = os.urandom(512)

    assert "bad header" in damaged(tmp_path, garbage).problem


def test_garbage_in_the_middle_is_refused(tmp_path):
    def garbage(data: bytearray, starts: list[int]) -> None:
        data[starts[3] : starts[3] + 512] = os.urandom(512)

    damaged(tmp_path, garbage)


def test_garbage_appended_at_the_end_is_refused(tmp_path):
    # Not zeros: not something a torn write leaves.
    def garbage(data: bytearray, starts: list[int]) -> None:
        data.extend(os.urandom(512))

    damaged(tmp_path, garbage)


def test_a_zeroed_sector_followed_by_later_writes_is_refused(tmp_path):
    # Looks torn, but intact records of two later writes follow: the zeros hit
    # data that had been made durable (and acknowledged).
    def hole(data: bytearray, starts: list[int]) -> None:
        end = (starts[1] // 512 + 1) * 512  # to the end of the sector: as if never written
        data[starts[1] : end] = bytes(end - starts[1])

    assert "several writes" in damaged(tmp_path, hole).problem


def test_a_journal_cut_to_nothing_is_refused(tmp_path):
    def empty(data: bytearray, starts: list[int]) -> None:
        del data[:]

    damaged(tmp_path, empty)


def test_term_and_vote_are_durable_and_a_damaged_term_file_is_refused(tmp_path):
    j = journal_with(tmp_path / "a", cmds(1, 3))
    j.setCurrentTerm(7, "10.0.0.3:4243")
    back = DurableJournal(str(crash_copy(tmp_path / "a", tmp_path / "b")), KEY)
    assert (back.getCurrentTerm(), back.getVotedForNodeId()) == (7, "10.0.0.3:4243")

    term = tmp_path / "b" / raftlog.TERM_NAME
    raw = term.read_bytes()
    assert b"10.0.0.3" not in raw  # encrypted with the data key
    term.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(RaftStateError, match="term: damaged"):
        DurableJournal(str(tmp_path / "b"), KEY)
    term.write_bytes(os.urandom(64))
    with pytest.raises(RaftStateError, match="term: damaged"):
        DurableJournal(str(tmp_path / "b"), KEY)
    term.unlink()
    with pytest.raises(RaftStateError, match="missing, while the journal holds entries of later terms"):
        DurableJournal(str(tmp_path / "b"), KEY)


def test_a_term_file_older_than_the_journal_is_refused(tmp_path):
    journal_with(tmp_path / "a", cmds(1, 3, term=1), cmds(4, 2, term=3))
    raftlog.write_term(str(tmp_path / "a" / raftlog.TERM_NAME), raftlog.TermState(term=2), KEY)
    with pytest.raises(RaftStateError, match="older than the journal"):
        DurableJournal(str(tmp_path / "a"), KEY)


def test_snapshot_file_round_trip_and_damage(tmp_path):
    path = str(tmp_path / raftlog.SNAPSHOT_NAME)
    payload = {"last": (b"x", 5, 1), "prev": (b"y", 4, 1), "cluster": ["a:1"], "consumers": [{"k": b"v"}]}
    raftlog.write_snapshot_file(path, payload, KEY)
    assert raftlog.read_snapshot_file(path, KEY) == payload
    data = bytearray(Path(path).read_bytes())
    data[-3] ^= 1
    Path(path).write_bytes(bytes(data))
    with pytest.raises(RaftStateError, match="payload checksum"):
        raftlog.read_snapshot_file(path, KEY)
    Path(path).write_bytes(bytes(data[:-10]))
    with pytest.raises(RaftStateError, match="truncated"):
        raftlog.read_snapshot_file(path, KEY)


def test_snapshot_transfer_form_round_trips_and_refuses_a_file_form(tmp_path):
    # What the leader sends a follower: the payload, not its own encrypted
    # file (the follower has another data key).
    payload = {"last": (b"x", 5, 1), "prev": (b"y", 4, 1), "cluster": ["a:1"], "consumers": [{"k": b"v"}]}
    sent = raftlog.encode_transfer(payload)
    assert raftlog.decode_snapshot("transfer", sent, None) == payload
    with pytest.raises(RaftStateError, match="payload checksum"):
        raftlog.decode_snapshot("transfer", sent[:-1] + bytes([sent[-1] ^ 1]), None)
    with pytest.raises(RaftStateError, match="encrypted snapshot where a transfer"):
        raftlog.decode_snapshot("transfer", raftlog.encode_snapshot(payload, KEY), None)


@pytest.fixture
def file_size_limit():
    """Set a limit on the size of files this process writes (RLIMIT_FSIZE: the
    kernel then fails writes past it with EFBIG, as a full disk fails them
    with ENOSPC). SIGXFSZ would kill the process: ignored meanwhile."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def limit(nbytes: int) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))

    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)


def test_a_failed_write_is_an_error_and_the_journal_stays_usable_on_disk(tmp_path, file_size_limit):
    j = journal_with(tmp_path / "a", cmds(1, 5))
    wal = tmp_path / "a" / raftlog.JOURNAL_NAME
    file_size_limit(wal.stat().st_size + 100)
    for e in cmds(6, 5, size=64):
        j.add(*e)
    with pytest.raises(RaftDiskError) as err:
        j.sync()
    file_size_limit(resource.RLIM_INFINITY)
    assert str(wal) in str(err.value) and "write failed" in str(err.value)
    with pytest.raises(RaftDiskError):
        j.add(*cmds(11, 1)[0])  # it refuses to go on as if nothing happened
    # What did reach the file is a torn tail after the last good write.
    assert DurableJournal(str(crash_copy(tmp_path / "a", tmp_path / "b")), KEY)[:] == cmds(1, 5)


def test_a_journal_gone_while_the_term_file_or_a_snapshot_remains_is_refused(tmp_path):
    # Issue 14: a manager that lost its log must not vote with an empty one.
    j = journal_with(tmp_path / "a", cmds(1, 5, term=2))
    j._destroy()
    (tmp_path / "a" / raftlog.JOURNAL_NAME).unlink()
    with pytest.raises(RaftStateError, match="wal: missing, while the term file"):
        DurableJournal(str(tmp_path / "a"), KEY)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / raftlog.SNAPSHOT_NAME).write_bytes(b"whatever")
    with pytest.raises(RaftStateError, match="a snapshot shows this manager took part"):
        DurableJournal(str(tmp_path / "b"), KEY)
    # A directory that never held Raft state starts a new journal.
    DurableJournal(str(tmp_path), KEY)._destroy()
    assert (tmp_path / raftlog.JOURNAL_NAME).exists()
