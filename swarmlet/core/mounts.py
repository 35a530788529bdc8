"""A service's mounts (docker's `--mount`): the checks on them, made once when
the spec is validated, and their expansion on the node.

Three types, as in Swarm: `volume` (a named volume of the node's engine,
created on first use and kept when the task is replaced: data written by one
task is there for its replacement on the same node; no source = an anonymous
volume, which goes with its container), `bind` (a path of the node's
filesystem, which must exist there: the engine's refusal rejects the task
with its reason) and `tmpfs` (memory, empty at every start). Source, target
and volume driver options may hold Swarm's templates (core/templates.py):
they are checked here and expanded by the node that creates the container.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import templates

TYPE_NAMES = {pb.Mount.VOLUME: "volume", pb.Mount.BIND: "bind", pb.Mount.TMPFS: "tmpfs"}

# The engine's rule for volume names (a single character is too short for it).
_VOLUME_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
# What placeholders stand for while a template is checked: plausible values of
# each field, so the shape of an expanded name can be checked too.
_SAMPLE = templates.Context(
    service_id="s0",
    service_name="service",
    service_labels={},
    task_id="t0",
    task_slot=1,
    node_id="n0",
    node_hostname="host",
    node_os="linux",
    node_arch="x86_64",
)


class InvalidMount(errors.Invalid):
    """A mount the engine could never make."""


def type_name(m: pb.Mount) -> str:
    return TYPE_NAMES.get(m.type, str(m.type))


def _expanded_sample(text: str, what: str) -> str:
    try:
        return templates.expand(text, _SAMPLE)
    except templates.TemplateError as e:
        raise InvalidMount(f"{what}: {e}") from None


def _check_one(m: pb.Mount) -> str:
    """Check one mount; returns its target (with templates as written)."""
    if m.type not in TYPE_NAMES:
        raise InvalidMount(f"unknown mount type {m.type}: use volume, bind or tmpfs")
    kind = type_name(m)
    if not m.target:
        raise InvalidMount(f"a {kind} mount needs a target (target=/path/in/container)")
    target = _expanded_sample(m.target, f"mount target {m.target!r}")
    if not target.startswith("/"):
        raise InvalidMount(f"mount target {m.target!r} must be an absolute path")
    if posixpath.normpath(target) == "/":
        raise InvalidMount("a mount cannot replace the container's root directory (target=/)")
    volume_opts = bool(m.volume_driver or m.volume_options or m.volume_labels or m.volume_nocopy)
    if volume_opts and m.type != pb.Mount.VOLUME:
        raise InvalidMount(f"volume-driver, volume-opt, volume-label and volume-nocopy are for volume mounts, not {kind}")
    if (m.tmpfs_size or m.tmpfs_mode) and m.type != pb.Mount.TMPFS:
        raise InvalidMount(f"tmpfs-size and tmpfs-mode are for tmpfs mounts, not {kind}")
    if m.type == pb.Mount.BIND:
        if not m.source:
            raise InvalidMount(f"a bind mount needs a source path (target {m.target})")
        if not _expanded_sample(m.source, f"mount source {m.source!r}").startswith("/"):
            raise InvalidMount(f"bind source {m.source!r} must be an absolute path")
    elif m.type == pb.Mount.VOLUME:
        if m.source:
            name = _expanded_sample(m.source, f"volume name {m.source!r}")
            if not _VOLUME_NAME_RE.match(name):
                raise InvalidMount(
                    f"invalid volume name {m.source!r}: use at least 2 letters, digits, '_', '.' or '-', "
                    "starting with a letter or digit (or an absolute path with type=bind)"
                )
        for k, v in m.volume_options.items():
            if not k:
                raise InvalidMount("a volume-opt needs a key (volume-opt=KEY=VALUE)")
            _expanded_sample(v, f"volume-opt {k}")
        if any(not k for k in m.volume_labels):
            raise InvalidMount("a volume-label needs a key (volume-label=KEY=VALUE)")
    else:  # tmpfs
        if m.source:
            raise InvalidMount(f"a tmpfs mount takes no source (got {m.source!r})")
        if m.tmpfs_size < 0:
            raise InvalidMount("tmpfs-size cannot be negative")
        if m.tmpfs_mode > 0o7777:
            raise InvalidMount(f"tmpfs-mode {m.tmpfs_mode:o} is not a permission mode (at most 7777, octal)")
    return target


def validate(mounts: Iterable[pb.Mount]) -> list[str]:
    """Check every mount of a container spec (syntax and templates; whether a
    bind source exists only its node can tell). Returns the targets as they
    expand with sample values, so other checks (secrets' and configs' files)
    can refuse a clash. Raises InvalidMount."""
    seen: dict[str, str] = {}
    for m in mounts:
        target = posixpath.normpath(_check_one(m))
        if target in seen:
            raise InvalidMount(f"mount target {target} is used twice")
        seen[target] = m.target
    return list(seen)


def expand(m: pb.Mount, ctx: templates.Context) -> pb.Mount:
    """A copy of `m` with its placeholders filled in for one task on one node
    (what Swarm expands: source, target, volume driver options)."""
    out = pb.Mount()
    out.CopyFrom(m)
    out.source = templates.expand(m.source, ctx)
    out.target = templates.expand(m.target, ctx)
    for k, v in m.volume_options.items():
        out.volume_options[k] = templates.expand(v, ctx)
    return out
