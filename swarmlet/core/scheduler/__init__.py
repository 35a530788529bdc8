"""The scheduler: pending tasks -> nodes (see round.py)."""

from swarmlet.core.scheduler.round import NO_NODE, schedule

__all__ = ["NO_NODE", "schedule"]
