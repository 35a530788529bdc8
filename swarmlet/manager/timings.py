"""Raft timing settings, apart from the Raft store (store.py) so that the
daemon's configuration reads them without loading pysyncobj on a worker."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RaftTimings:
    """Raft timing knobs (seconds). Smaller means faster failover and faster
    commits; raft_min_timeout must stay above 3 x append_entries_period."""

    tick_period: float = 0.005
    append_entries_period: float = 0.02
    # Election timeout window: a follower that hears nothing from the leader for
    # a random time in [min, max] starts an election. Failover after a leader
    # crash takes about max + one election round.
    raft_min_timeout: float = 0.4
    raft_max_timeout: float = 0.8
    # A leader that has not heard from a majority for this long steps down (and
    # refuses writes). pysyncobj's default is 30 s, far too long for a
    # partitioned leader.
    leader_fallback_timeout: float = 1.5
    # Log compaction: a snapshot replaces the journal once it has this many
    # entries (or every compaction_min_time seconds), keeping it bounded.
    compaction_min_entries: int = 2000
    compaction_min_time: float = 60.0

    def validate(self) -> None:
        """Refuse settings pysyncobj would reject or that could never elect."""
        if self.append_entries_period <= 0 or self.tick_period <= 0:
            raise ValueError("raft periods must be positive")
        if self.raft_min_timeout <= 3 * self.append_entries_period:
            raise ValueError(
                f"election timeout min {self.raft_min_timeout}s must exceed 3 x append period ({self.append_entries_period}s)"
            )
        if self.raft_max_timeout < self.raft_min_timeout:
            raise ValueError("election timeout max must be >= min")
        if self.leader_fallback_timeout <= self.append_entries_period:
            raise ValueError("leader fallback timeout must exceed the append period")
        if self.compaction_min_entries < 2:
            raise ValueError("compaction_min_entries must be >= 2")
