"""Compose storage: top-level `volumes:`, `secrets:` and `configs:`, and a
service's `volumes`, `tmpfs`, `secrets` and `configs` -> the same Mount,
SecretReference and ConfigReference fields `service create --mount/--secret/
--config` set (cli/storage.py), checked by the manager's own mount check
(core/mounts.py) so both paths refuse the same things.

Pure over the files: a file-backed secret or config is read here, so the
whole stack is checked before anything is sent."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.compose.check import Node
from swarmlet.cli.parse import parse_size
from swarmlet.cli.storage import parse_file_ref
from swarmlet.core import mounts
from swarmlet.core import secrets as sc

NAMESPACE_LABEL = "com.docker.stack.namespace"


@dataclass
class StackVolume:
    key: str
    name: str  # the volume's name on the engines
    external: bool
    driver: str = ""
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class StackFile:
    """A top-level secret or config."""

    kind: str  # "secret" or "config"
    key: str  # the name in the file
    name: str  # the name in the cluster
    external: bool
    path: str = ""  # the file it is read from ("" when external)
    data: bytes = field(default=b"", repr=False)  # never in a traceback
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class StackObjects:
    """The top-level volumes, secrets and configs, by their key in the file."""

    volumes: dict[str, StackVolume] = field(default_factory=dict)
    secrets: dict[str, StackFile] = field(default_factory=dict)
    configs: dict[str, StackFile] = field(default_factory=dict)


def read_objects(stack: str, top: Node, base_dir: str) -> StackObjects:
    out = StackObjects()
    for section in ("volumes", "secrets", "configs"):
        if not top.has(section) or top.child(section).value is None:
            continue
        for key, sub in top.child(section).mapping().items():
            if key.startswith("x-"):
                continue
            if section == "volumes":
                out.volumes[key] = read_volume(stack, key, sub)
            else:
                kind = section[:-1]
                getattr(out, section)[key] = read_file_object(stack, kind, key, sub, base_dir)
    return out


def _labels(n: Node) -> dict[str, str]:
    return {k: v or "" for k, v in n.dict_or_list().items()}


def _external(n: Node, key: str, default: str) -> tuple[bool, str]:
    """`external: true` or `external: {name: X}` (the older form) -> (external, name)."""
    sub = n.child("external")
    if isinstance(sub.value, dict):
        return True, sub.child("name").string() if sub.has("name") else (n.child("name").string() if n.has("name") else key)
    ext = sub.boolean()
    return ext, (n.child("name").string() if n.has("name") else key) if ext else default


def read_volume(stack: str, key: str, n: Node) -> StackVolume:
    name = f"{stack}_{key}"
    if n.value is None:
        return StackVolume(key, name, False, labels={NAMESPACE_LABEL: stack})
    vol = StackVolume(key, name, False)
    for k, sub in n.mapping().items():
        if k == "driver":
            vol.driver = sub.string()
        elif k == "driver_opts":
            vol.options = {ok: ov or "" for ok, ov in sub.dict_or_list().items()}
        elif k == "labels":
            vol.labels = _labels(sub)
        elif k == "name":
            vol.name = sub.string()
        elif k == "external":
            vol.external, vol.name = _external(n, key, vol.name)
        elif not k.startswith("x-"):
            sub.fail("unknown key")
    if vol.external:
        for k in n.keys():
            if k not in ("external", "name") and not k.startswith("x-"):
                n.child(k).fail("an external volume is only named, not configured")
    else:
        vol.labels[NAMESPACE_LABEL] = stack
    return vol


def read_file_object(stack: str, kind: str, key: str, n: Node, base_dir: str) -> StackFile:
    """A top-level secret or config: `file:` (created by deploy as
    STACK_KEY, or `name:`) or `external:` (must exist)."""
    obj = StackFile(kind, key, f"{stack}_{key}", False)
    n.mapping()
    for k, sub in n.items():
        if k == "file":
            obj.path = sub.string()
        elif k == "name":
            obj.name = sub.string()
        elif k == "labels":
            obj.labels = _labels(sub)
        elif k == "external":
            obj.external, obj.name = _external(n, key, obj.name)
        elif k in ("environment", "content", "driver", "driver_opts", "template_driver"):
            sub.fail(f"not supported by swarmlet (a {kind} comes from a file, or is external)")
        elif not k.startswith("x-"):
            sub.fail("unknown key")
    if obj.external:
        for k in n.keys():
            if k not in ("external", "name") and not k.startswith("x-"):
                n.child(k).fail(f"an external {kind} is only named, not configured")
        return obj
    if not obj.path:
        n.fail(f"a {kind} needs file: (or external: true)")
    full = obj.path if os.path.isabs(obj.path) else os.path.join(base_dir, obj.path)
    try:
        with open(full, "rb") as f:
            obj.data = f.read(sc.MAX_DATA + 1)
    except OSError as e:
        n.child("file").fail(f"cannot read {obj.path}: {e.strerror}")
    obj.path = os.path.normpath(full)
    obj.labels[NAMESPACE_LABEL] = stack
    spec = (pb.SecretSpec if kind == "secret" else pb.ConfigSpec)(name=obj.name, data=obj.data)
    try:
        sc.validate_spec(sc.SECRET if kind == "secret" else sc.CONFIG, spec)
    except ValueError as e:
        n.fail(str(e))
    return obj


# ---- a service's mounts ----

_TYPES = {"volume": pb.Mount.VOLUME, "bind": pb.Mount.BIND, "tmpfs": pb.Mount.TMPFS}


def _bind_source(src: str, base_dir: str) -> str:
    if src.startswith("~"):
        return os.path.expanduser(src)
    return os.path.normpath(src if os.path.isabs(src) else os.path.join(base_dir, src))


def _named(m: pb.Mount, vol: StackVolume) -> None:
    m.source = vol.name
    if not vol.external:
        m.volume_driver = vol.driver
        m.volume_options.update(vol.options)
        m.volume_labels.update(vol.labels)


def _short_volume(e: Node, base_dir: str, volumes: dict[str, StackVolume]) -> pb.Mount:
    """`TARGET`, `SOURCE:TARGET` or `SOURCE:TARGET:MODE` (ro, rw, nocopy)."""
    parts = e.string().split(":")
    if len(parts) > 3 or not all(parts):
        e.fail(f"invalid volume {e.string()!r}: expected [SOURCE:]TARGET[:MODE]")
    m = pb.Mount(type=pb.Mount.VOLUME, target=parts[-1] if len(parts) < 3 else parts[1])
    if len(parts) == 3:
        for mode in parts[2].split(","):
            if mode in ("ro", "rw"):
                m.read_only = mode == "ro"
            elif mode == "nocopy":
                m.volume_nocopy = True
            else:
                e.fail(f"invalid volume mode {mode!r}: swarmlet takes ro, rw or nocopy")
    if len(parts) >= 2:
        src = parts[0]
        if src.startswith(("/", ".", "~")):
            m.type = pb.Mount.BIND
            m.source = _bind_source(src, base_dir)
        elif src in volumes:
            _named(m, volumes[src])
        else:
            e.fail(f"volume {src!r} is not defined in the top-level volumes")
    return m


def _long_volume(e: Node, base_dir: str, volumes: dict[str, StackVolume]) -> pb.Mount:
    if not e.has("type"):
        e.fail("a volume in the long syntax needs type: (volume, bind or tmpfs)")
    kind = e.child("type").choice(tuple(_TYPES))
    m = pb.Mount(type=_TYPES[kind])
    for k, sub in e.items():
        if k == "type":
            continue
        if k == "source":
            src = sub.string()
            if kind == "bind":
                m.source = _bind_source(src, base_dir)
            elif kind == "volume":
                if src not in volumes:
                    sub.fail(f"volume {src!r} is not defined in the top-level volumes")
                _named(m, volumes[src])
            else:
                sub.fail("a tmpfs mount takes no source")
        elif k == "target":
            m.target = sub.string()
        elif k == "read_only":
            m.read_only = sub.boolean()
        elif k == "consistency":
            sub.string()  # macOS only: no effect on Linux engines, as docker
        elif k in ("volume", "tmpfs", "bind") and k != kind:
            sub.fail(f"{k} options do not apply to a {kind} mount")
        elif k == "volume":
            for vk, vv in sub.mapping().items():
                if vk == "nocopy":
                    m.volume_nocopy = vv.boolean()
                else:
                    vv.fail("not supported by swarmlet" if vk == "subpath" else "unknown key")
        elif k == "tmpfs":
            for tk, tv in sub.mapping().items():
                if tk == "size":
                    m.tmpfs_size = tv.parsed(parse_size, "size")
                elif tk == "mode":
                    m.tmpfs_mode = _mode(tv, 0o7777)
                else:
                    tv.fail("unknown key")
        elif k == "bind":
            for _bk, bv in sub.mapping().items():
                bv.fail("not supported by swarmlet (bind propagation and SELinux relabelling)")
        elif not k.startswith("x-"):
            sub.fail("unknown key")
    if not m.target:
        e.fail("target: is required")
    return m


def _mode(n: Node, limit: int) -> int:
    """A permission mode: a YAML integer (0440 is octal in YAML) or an octal string."""
    v = n.value
    if isinstance(v, int) and not isinstance(v, bool):
        mode = v
    else:
        text = n.string().strip().lower().removeprefix("0o")
        try:
            mode = int(text, 8)
        except ValueError:
            n.fail(f"invalid mode {n.string()!r}: expected an octal mode such as 0440")
    if not 0 <= mode <= limit:
        n.fail(f"invalid mode {oct(mode)}: at most {limit:o} (octal)")
    return mode


def _check_mount(e: Node, m: pb.Mount) -> pb.Mount:
    try:
        mounts.validate([m])
    except mounts.InvalidMount as err:
        e.fail(str(err))
    return m


def _put(field: object, item: pb.Mount | pb.SecretReference | pb.ConfigReference, target: str) -> None:
    """Append, replacing an entry at the same target: several -c files merge
    these lists by target, the later file winning (as Compose merges them)."""
    items = list(field)  # type: ignore[call-overload]
    kept = [x for x in items if (x.target if isinstance(x, pb.Mount) else x.file.name) != target]
    if len(kept) != len(items):
        del field[:]  # type: ignore[attr-defined]
        field.extend(kept)  # type: ignore[attr-defined]
    field.append(item)  # type: ignore[attr-defined]


def service_volumes(c: pb.ContainerSpec, n: Node, base_dir: str, volumes: dict[str, StackVolume]) -> None:
    for e in n.elements():
        m = _long_volume(e, base_dir, volumes) if isinstance(e.value, dict) else _short_volume(e, base_dir, volumes)
        _put(c.mounts, _check_mount(e, m), m.target)


def service_tmpfs(c: pb.ContainerSpec, n: Node) -> None:
    """`tmpfs: /run` or a list; docker's `/run:size=...` options are not taken by Swarm."""
    for e in [n] if isinstance(n.value, str) else n.elements():
        target = e.string()
        if ":" in target:
            e.fail("tmpfs options are not supported here: use the long volume syntax (type: tmpfs, tmpfs: {size, mode})")
        _put(c.mounts, _check_mount(e, pb.Mount(type=pb.Mount.TMPFS, target=target)), target)


def _file_refs(n: Node, kind: str, objects: dict[str, StackFile]) -> list[tuple[str, pb.FileTarget]]:
    """A service's `secrets:`/`configs:` (short: the key; long: source,
    target, uid, gid, mode) -> (cluster name, file). The default target is the
    key in the file, as docker's (a secret under /run/secrets/, a config at /KEY)."""
    out = []
    for e in n.elements():
        if isinstance(e.value, dict):
            if not e.has("source"):
                e.fail("source: is required")
            key = e.child("source").string()
            f = pb.FileTarget()
            for k, sub in e.items():
                if k == "target":
                    f.name = sub.string()
                elif k in ("uid", "gid"):
                    # The CLI's own parser checks the value as --secret uid=N does.
                    try:
                        _, parsed_f = parse_file_ref(f"source=x,{k}={sub.string()}", kind)
                    except ValueError as err:
                        sub.fail(str(err))
                    setattr(f, k, getattr(parsed_f, k))
                elif k == "mode":
                    f.mode = _mode(sub, 0o777)
                elif k != "source" and not k.startswith("x-"):
                    sub.fail("unknown key")
            where = e.child("source")
        else:
            key, f, where = e.string(), pb.FileTarget(), e
        obj = objects.get(key)
        if obj is None:
            where.fail(f"{kind} {key!r} is not defined in the top-level {kind}s")
        if not f.name:
            f.name = key if kind == "secret" else "/" + key
        out.append((obj.name, f))
    return out


def service_secrets(c: pb.ContainerSpec, n: Node, objects: dict[str, StackFile]) -> None:
    for name, f in _file_refs(n, "secret", objects):
        _put(c.secrets, pb.SecretReference(secret_name=name, file=f), f.name)


def service_configs(c: pb.ContainerSpec, n: Node, objects: dict[str, StackFile]) -> None:
    for name, f in _file_refs(n, "config", objects):
        _put(c.configs, pb.ConfigReference(config_name=name, file=f), f.name)
