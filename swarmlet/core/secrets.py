"""Secrets and configs: the checks on their specs, a service's references to
them, which services use one, and what a node receives.

One object model for both, as in Swarm: a named, immutable blob of at most
500 KiB (a change is a new object and a service update). A service refers to
one by name; the manager resolves the name to the id when the spec is
created or updated, and fills in the file's defaults (target, owner, mode).
A node gets the data only while it runs a task that uses it (`for_node`),
and a secret's data never leaves the control API (`redacted`).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import lookup
from swarmlet.core import state as st
from swarmlet.core import tasks as tk

MAX_DATA = 500 * 1024  # bytes, as Swarm
MAX_NAME = 64
SECRETS_DIR = "/run/secrets"  # where a secret's relative target lands in the container
DEFAULT_MODE = 0o444
_NAME_RE = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9_.-]*[a-zA-Z0-9])?$")
_ID_RE = re.compile(r"^[0-9]+$")

Obj = pb.Secret | pb.Config
Ref = pb.SecretReference | pb.ConfigReference


class InvalidReference(errors.Invalid):
    """A --secret or --config that cannot be honoured."""


@dataclass(frozen=True)
class Kind:
    """What differs between secrets and configs."""

    word: str  # "secret" | "config"
    table: str  # the Snapshot table
    secret: bool  # the data is never shown

    def objects(self, snap: st.Snapshot) -> Mapping[str, Obj]:
        objs: Mapping[str, Obj] = getattr(snap, self.table)
        return objs

    def refs(self, c: pb.ContainerSpec) -> Sequence[Ref]:
        found: Sequence[Ref] = getattr(c, self.table)
        return found

    def ref_id(self, ref: Ref) -> str:
        return ref.secret_id if isinstance(ref, pb.SecretReference) else ref.config_id

    def ref_name(self, ref: Ref) -> str:
        return ref.secret_name if isinstance(ref, pb.SecretReference) else ref.config_name

    def set_ref(self, ref: Ref, oid: str, name: str) -> None:
        if isinstance(ref, pb.SecretReference):
            ref.secret_id, ref.secret_name = oid, name
        else:
            ref.config_id, ref.config_name = oid, name

    def container_path(self, ref: Ref) -> str:
        """Where the file appears in the container: a secret's relative target
        under /run/secrets, anything absolute as given."""
        name = ref.file.name
        return posixpath.normpath(name if name.startswith("/") else posixpath.join(SECRETS_DIR, name))

    def default_target(self, name: str) -> str:
        # Swarm's defaults: /run/secrets/NAME for a secret, /NAME for a config.
        return name if self.secret else "/" + name


SECRET = Kind("secret", "secrets", True)
CONFIG = Kind("config", "configs", False)
KINDS = (SECRET, CONFIG)


# ---- the objects ----


def validate_spec(kind: Kind, spec: pb.SecretSpec | pb.ConfigSpec) -> None:
    """Name, labels and data of a new secret or config. Raises errors.Invalid."""
    word = kind.word
    if not spec.name:
        raise errors.Invalid(f"a {word} needs a name")
    if len(spec.name) > MAX_NAME or not _NAME_RE.match(spec.name):
        raise errors.Invalid(
            f"invalid {word} name {spec.name!r}: use 1-{MAX_NAME} letters, digits, '_', '.' or '-', "
            "starting and ending with a letter or digit"
        )
    for k in spec.labels:
        if not k:
            raise errors.Invalid(f"a {word} label needs a key")
    size = len(spec.data)
    if size == 0:
        raise errors.Invalid(f"the {word} {spec.name!r} is empty: give it some data")
    if size > MAX_DATA:
        raise errors.Invalid(f"the {word} {spec.name!r} is {size} bytes: the limit is {MAX_DATA} bytes (500 KiB)")
    if kind.secret and not spec.data.strip():
        raise errors.Invalid(f"the secret {spec.name!r} holds only white space")


def check_name_free(kind: Kind, snap: st.Snapshot, name: str) -> None:
    if any(o.spec.name == name for o in kind.objects(snap).values()):
        raise errors.AlreadyExists(f"a {kind.word} named {name!r} already exists")


def find(kind: Kind, snap: st.Snapshot, ref: str) -> Obj:
    """By id, name or unique id prefix (errors.NotFound names it)."""
    return lookup.resolve(kind.objects(snap), ref, kind.word, lambda o: o.spec.name)


def find_secret(snap: st.Snapshot, ref: str) -> pb.Secret:
    found = find(SECRET, snap, ref)
    assert isinstance(found, pb.Secret)
    return found


def find_config(snap: st.Snapshot, ref: str) -> pb.Config:
    found = find(CONFIG, snap, ref)
    assert isinstance(found, pb.Config)
    return found


def redacted(secret: pb.Secret) -> pb.Secret:
    """A copy without the data: what every reply of the control API carries."""
    out = pb.Secret()
    out.CopyFrom(secret)
    out.spec.ClearField("data")
    return out


def without_data(config: pb.Config) -> pb.Config:
    out = pb.Config()
    out.CopyFrom(config)
    out.spec.ClearField("data")
    return out


# ---- a service's references ----


def _check_file(kind: Kind, ref: Ref, name: str) -> None:
    f = ref.file
    if not f.name:
        f.name = kind.default_target(name)
    parts = f.name.split("/")
    if ".." in parts:
        raise InvalidReference(f"{kind.word} {name!r}: target {f.name!r} must not contain '..'")
    if not kind.secret and not f.name.startswith("/"):
        raise InvalidReference(f"config {name!r}: target {f.name!r} must be an absolute path")
    path = kind.container_path(ref)
    if path in ("/", SECRETS_DIR):
        raise InvalidReference(f"{kind.word} {name!r}: target {f.name!r} is a directory, not a file")
    for what, value in (("uid", f.uid), ("gid", f.gid)):
        if value and not _ID_RE.match(value):
            raise InvalidReference(f"{kind.word} {name!r}: {what} {value!r} must be a number")
    f.uid = f.uid or "0"
    f.gid = f.gid or "0"
    if f.mode > 0o777:
        raise InvalidReference(f"{kind.word} {name!r}: mode {f.mode:o} is not a file mode (at most 0777, octal)")
    f.mode = f.mode or DEFAULT_MODE


def resolve_references(spec: pb.ServiceSpec, snap: st.Snapshot, mount_targets: Iterable[str] = ()) -> None:
    """Resolve the spec's --secret/--config references in place: each names
    an existing object (by name or id; both are then recorded), its file gets
    Swarm's defaults (target = the name, owner 0:0, mode 0444), and no two
    files (or a file and a mount) share a path in the container. Raises
    errors.NotFound or InvalidReference; changes nothing else."""
    c = spec.task.container
    taken: dict[str, str] = {posixpath.normpath(t): "a mount" for t in mount_targets}
    for kind in KINDS:
        for ref in kind.refs(c):
            wanted = kind.ref_name(ref) or kind.ref_id(ref)
            if not wanted:
                raise InvalidReference(f"a --{kind.word} needs the name of a {kind.word} (source=NAME)")
            # A reference that carries an id was resolved before (the spec
            # of an update or a rollback): it means that very object, not a
            # newer one that took its name.
            try:
                obj = kind.objects(snap)[kind.ref_id(ref)] if kind.ref_id(ref) else find(kind, snap, kind.ref_name(ref))
            except (KeyError, errors.NotFound):
                raise errors.NotFound(
                    f"{kind.word} {wanted!r} not found: create it first (swarmlet {kind.word} create)"
                ) from None
            kind.set_ref(ref, obj.id, obj.spec.name)
            _check_file(kind, ref, obj.spec.name)
            path = kind.container_path(ref)
            if path in taken:
                raise InvalidReference(f"{kind.word} {obj.spec.name!r} and {taken[path]} have the same target {path}")
            taken[path] = f"{kind.word} {obj.spec.name!r}"


def services_using(kind: Kind, snap: st.Snapshot, oid: str) -> list[str]:
    """Names of the services whose spec uses the object, and of those with a
    task still running one that does (a rolling update away from it)."""
    names = {s.spec.name for s in snap.services.values() if any(kind.ref_id(r) == oid for r in kind.refs(s.spec.task.container))}
    for t in snap.tasks.values():
        if (
            not tk.is_terminal(t)
            and t.desired_state <= pb.SHUTDOWN
            and any(kind.ref_id(r) == oid for r in kind.refs(t.spec.container))
        ):
            names.add(t.service_name)
    return sorted(names)


def check_removable(kind: Kind, snap: st.Snapshot, obj: pb.Secret | pb.Config) -> None:
    users = services_using(kind, snap, obj.id)
    if users:
        s = "s" if len(users) > 1 else ""
        raise errors.FailedPrecondition(
            f"{kind.word} {obj.spec.name!r} is in use by service{s} {', '.join(users)}: "
            f"remove it from {'them' if s else 'it'} first (service update --{kind.word}-rm)"
        )


# ---- what a node receives ----


def _needed_ids(kind: Kind, tasks: Iterable[pb.Task]) -> list[str]:
    return sorted({kind.ref_id(r) for t in tasks for r in kind.refs(t.spec.container)})


def for_node(snap: st.Snapshot, tasks: Iterable[pb.Task]) -> tuple[list[pb.Secret], list[pb.Config]]:
    """The secrets and configs (with their data) that a node's tasks may
    still need: those of its tasks that are wanted and have not ended. A task
    that ended, or one being stopped, has no further use for them, so a node
    with no live task using a secret does not get it (and drops it)."""
    live = [t for t in tasks if tk.active(t)]
    secrets = [snap.secrets[i] for i in _needed_ids(SECRET, live) if i in snap.secrets]
    configs = [snap.configs[i] for i in _needed_ids(CONFIG, live) if i in snap.configs]
    return secrets, configs
