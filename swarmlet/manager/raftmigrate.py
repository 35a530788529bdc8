"""One-time conversion of a manager's Raft files from pysyncobj's own formats
(journal, journal.meta, dump: what swarmlet wrote before raftlog.py) to
raftlog's. Without it an upgraded manager would find no journal and start as
a voter with an empty state.

The old files carry no checksums: they are taken as they are (a record that
does not even parse refuses the start). The new files are written durably,
encrypted with the manager's data key, the journal last, as its presence
means "converted"; then the old files are deleted: they hold the cluster's
secrets (CA key, tokens, Raft secret) in the clear (issue 13). A directory of
old files an earlier swarmlet moved aside (raft/pysyncobj-0.3.17/) is deleted
for the same reason.
"""

from __future__ import annotations

import gzip
import logging
import os
import pickle
import shutil
import struct
from typing import Any

from swarmlet.atrest import DataKey
from swarmlet.manager import raftlog
from swarmlet.manager.raftlog import Entry, RaftStateError, TermState

log = logging.getLogger(__name__)

OLD_JOURNAL, OLD_META, OLD_DUMP = "journal", "journal.meta", "dump"
OLD_FILES = (OLD_JOURNAL, OLD_META, OLD_DUMP)
MOVED_TO = "pysyncobj-0.3.17"
# pysyncobj's FileJournal: name (24 bytes), version (8), format (u32), end of
# the last record (u32); records: u32 size, u64 index, u64 term, command, u32 size.
_OLD_HEADER = 40
_OLD_END_OFFSET = 36


def _read_old_journal(path: str) -> list[Entry]:
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < _OLD_HEADER or not data.startswith(b"PYSYNCOBJ"):
        raise RaftStateError(path, "not a pysyncobj journal (bad header)")
    (end,) = struct.unpack_from("<I", data, _OLD_END_OFFSET)
    if not _OLD_HEADER <= end <= len(data):
        raise RaftStateError(path, f"pysyncobj journal: its end offset {end} is outside the file")
    entries: list[Entry] = []
    pos = _OLD_HEADER
    while pos < end:
        (size,) = struct.unpack_from("<I", data, pos)
        if size < 16 or pos + 8 + size > end or struct.unpack_from("<I", data, pos + 4 + size)[0] != size:
            raise RaftStateError(path, f"pysyncobj journal: a damaged record at byte {pos}")
        idx, term = struct.unpack_from("<QQ", data, pos + 4)
        entries.append((bytes(data[pos + 20 : pos + 4 + size]), idx, term))
        pos += size + 8
    return entries


def _read_old_dump(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f, gzip.GzipFile(fileobj=f) as g:
            data, last, prev, cluster = pickle.load(g)
        consumers = list(data[1:])  # data[0] is SyncObj's own attributes
        return {
            "last": tuple(last),
            "prev": tuple(prev),
            "cluster": sorted(str(getattr(n, "id", n)) for n in cluster),
            "consumers": consumers,
        }
    except Exception as e:
        raise RaftStateError(path, f"pysyncobj dump does not load ({type(e).__name__}: {e})") from None


def migrate(raft_dir: str, key: DataKey) -> bool:
    """Convert pysyncobj's files in raft_dir, if there are any and no journal
    of ours yet. Returns True if it converted something."""
    moved = os.path.join(raft_dir, MOVED_TO)
    if os.path.isdir(moved):
        shutil.rmtree(moved)
        raftlog.fsync_dir(raft_dir)
    old = {name: os.path.join(raft_dir, name) for name in (OLD_JOURNAL, OLD_META, OLD_DUMP)}
    present = [name for name, path in old.items() if os.path.exists(path)]
    if not present:
        return False
    if not os.path.exists(os.path.join(raft_dir, raftlog.JOURNAL_NAME)):
        entries = _read_old_journal(old[OLD_JOURNAL]) if OLD_JOURNAL in present else []
        meta: dict[str, Any] = {}
        if OLD_META in present:
            try:
                with open(old[OLD_META], "rb") as f:
                    meta = dict(pickle.load(f))
            except Exception:
                raise RaftStateError(old[OLD_META], "pysyncobj journal meta does not load") from None
        if OLD_DUMP in present:
            payload = _read_old_dump(old[OLD_DUMP])
            tmp = os.path.join(raft_dir, raftlog.SNAPSHOT_NAME + ".tmp")
            raftlog.write_snapshot_file(tmp, payload, key)
            os.rename(tmp, os.path.join(raft_dir, raftlog.SNAPSHOT_NAME))
        # pysyncobj took the larger of the stored term and the log's last term.
        last_term = entries[-1][2] if entries else 0
        term = TermState(
            term=max(int(meta.get("currentTerm", 0)), last_term),
            vote=meta.get("votedForNodeId"),
            commit=int(meta.get("raftCommitIndex", 1)),
        )
        raftlog.write_term(os.path.join(raft_dir, raftlog.TERM_NAME), term, key)
        raftlog.write_durably(os.path.join(raft_dir, raftlog.JOURNAL_NAME), raftlog.DurableJournal.file_bytes(entries, 1, key))
        log.warning(
            "raft state in %s converted from pysyncobj's files (%d journal entries%s), encrypted; the old files are deleted",
            raft_dir,
            len(entries),
            ", a snapshot" if OLD_DUMP in present else "",
        )
    for name in present:
        os.unlink(old[name])
    raftlog.fsync_dir(raft_dir)
    return True
