"""The scheduler: pending tasks -> nodes.

filters.py   each filter checks a node for a task and says why not
pipeline.py  runs the filters in order; explains a task no node takes
rank.py      spread among the nodes that pass
load.py      what the round has placed where
round.py     one round: ties them together (`schedule`)
"""

from swarmlet.core.scheduler.pipeline import NO_NODE
from swarmlet.core.scheduler.round import schedule

__all__ = ["NO_NODE", "schedule"]
