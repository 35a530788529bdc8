"""Pure mapping from a task's mounts to the Docker Engine API's `Mounts`
(HostConfig), for runtime/containers.py. Templates are expanded before
(agent/taskfiles.py): what arrives here is what the engine gets.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from swarmlet.api import objects_pb2 as pb

_TYPES = {pb.Mount.VOLUME: "volume", pb.Mount.BIND: "bind", pb.Mount.TMPFS: "tmpfs"}


def engine_mount(m: pb.Mount) -> dict[str, Any]:
    """One mount in the engine's terms. A named volume that does not exist yet
    is created by the engine (with the given driver and options) when the
    container is created, and survives the container: the task's replacement
    on the node finds its data."""
    out: dict[str, Any] = {"Type": _TYPES[m.type], "Target": m.target, "ReadOnly": m.read_only}
    if m.type == pb.Mount.VOLUME:
        if m.source:
            out["Source"] = m.source
        opts: dict[str, Any] = {}
        if m.volume_nocopy:
            opts["NoCopy"] = True
        if m.volume_labels:
            opts["Labels"] = dict(m.volume_labels)
        if m.volume_driver or m.volume_options:
            opts["DriverConfig"] = {"Name": m.volume_driver or "local", "Options": dict(m.volume_options)}
        if opts:
            out["VolumeOptions"] = opts
    elif m.type == pb.Mount.BIND:
        out["Source"] = m.source
    else:
        tmpfs: dict[str, Any] = {}
        if m.tmpfs_size:
            tmpfs["SizeBytes"] = int(m.tmpfs_size)
        if m.tmpfs_mode:
            tmpfs["Mode"] = int(m.tmpfs_mode)
        if tmpfs:
            out["TmpfsOptions"] = tmpfs
    return out


def engine_mounts(mounts: Iterable[pb.Mount]) -> list[dict[str, Any]]:
    return [engine_mount(m) for m in mounts]
