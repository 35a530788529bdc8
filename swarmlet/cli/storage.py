"""`--mount`, `--secret` and `--config` (and their `--*-add` / `--*-rm` forms
of `service update`) -> the spec's mounts and references.

Pure: docker's syntax is parsed here (comma-separated KEY=VALUE fields, CSV
quoting for values holding commas), bad values raise typer.BadParameter
naming the flag, and nothing is sent. The manager checks the rest with the
cluster's state (core/mounts.py, core/secrets.py): names resolve to ids
there, so a reference here carries the name as typed.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from typing import TypeVar

import typer

from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.options import parsed
from swarmlet.cli.parse import parse_size
from swarmlet.cli.service_flags import StorageFlags, StorageUpdateFlags

_TYPES = {"volume": pb.Mount.VOLUME, "bind": pb.Mount.BIND, "tmpfs": pb.Mount.TMPFS}
_TRUE = {"", "true", "1"}
_FALSE = {"false", "0"}


def _fields(text: str) -> list[str]:
    """Docker's --mount/--secret value: comma-separated, CSV-quoted where a
    value holds a comma (volume-opt=o="addr=1,rw")."""
    try:
        rows = list(csv.reader([text], skipinitialspace=False))
    except csv.Error as e:
        raise ValueError(f"cannot parse {text!r}: {e}") from None
    return [f for f in (rows[0] if rows else []) if f.strip()]


def _flag(key: str, value: str | None) -> bool:
    v = (value or "").strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"invalid value for {key}: {value!r} (use true or false)")


def _octal(key: str, value: str, limit: int) -> int:
    """A permission mode, always octal ("0400", "400" and "0o400" are the
    same): docker's base-0 parse would take "400" as decimal."""
    v = value.strip().lower().removeprefix("0o")
    try:
        mode = int(v, 8)
    except ValueError:
        raise ValueError(f"invalid {key} {value!r}: expected an octal mode such as 0400") from None
    if not 0 <= mode <= limit:
        raise ValueError(f"invalid {key} {value!r}: at most {limit:o} (octal)")
    return mode


def _kv(text: str, what: str) -> tuple[str, str]:
    k, sep, v = text.partition("=")
    if not sep or not k:
        raise ValueError(f"invalid {what} {text!r}: expected KEY=VALUE")
    return k, v


def parse_mount(text: str) -> pb.Mount:
    """`type=volume,source=data,target=/data,readonly,...` -> Mount. Raises
    ValueError naming the field."""
    m = pb.Mount()
    kind = "volume"
    volume_fields: list[str] = []
    tmpfs_fields: list[str] = []
    seen_target = False
    for field in _fields(text):
        key, sep, value = field.partition("=")
        key = key.strip().lower()
        if key in ("readonly", "ro"):
            m.read_only = _flag(key, value if sep else None)
            continue
        if key == "volume-nocopy":
            m.volume_nocopy = _flag(key, value if sep else None)
            volume_fields.append(key)
            continue
        if not sep:
            raise ValueError(f"invalid field {field!r}: expected KEY=VALUE")
        if key == "type":
            kind = value.strip().lower()
            if kind not in _TYPES:
                raise ValueError(f"unknown mount type {value!r}: use volume, bind or tmpfs")
        elif key in ("source", "src"):
            m.source = value
        elif key in ("target", "destination", "dst"):
            m.target = value
            seen_target = True
        elif key == "volume-driver":
            m.volume_driver = value
            volume_fields.append(key)
        elif key == "volume-opt":
            k, v = _kv(value, "volume-opt")
            m.volume_options[k] = v
            volume_fields.append(key)
        elif key == "volume-label":
            k, v = _kv(value, "volume-label")
            m.volume_labels[k] = v
            volume_fields.append(key)
        elif key == "tmpfs-size":
            m.tmpfs_size = parse_size(value)
            tmpfs_fields.append(key)
        elif key == "tmpfs-mode":
            m.tmpfs_mode = _octal(key, value, 0o7777)
            tmpfs_fields.append(key)
        else:
            raise ValueError(
                f"unknown field {key!r}: use type, source, target, readonly, volume-driver, volume-opt, "
                "volume-label, volume-nocopy, tmpfs-size or tmpfs-mode"
            )
    m.type = _TYPES[kind]
    if not seen_target or not m.target:
        raise ValueError("target is required (target=/path/in/container)")
    if volume_fields and kind != "volume":
        raise ValueError(f"{', '.join(sorted(set(volume_fields)))} only apply to type=volume")
    if tmpfs_fields and kind != "tmpfs":
        raise ValueError(f"{', '.join(sorted(set(tmpfs_fields)))} only apply to type=tmpfs")
    if kind == "bind" and not m.source:
        raise ValueError("a bind mount needs source=/host/path")
    if kind == "tmpfs" and m.source:
        raise ValueError("a tmpfs mount takes no source")
    return m


def parse_file_ref(text: str, word: str) -> tuple[str, pb.FileTarget]:
    """`source=NAME,target=T,uid=N,gid=N,mode=0400` (or just `NAME`) -> (the
    name as typed, the file). Defaults are the manager's to fill."""
    fields = _fields(text)
    if len(fields) == 1 and "=" not in fields[0]:
        return fields[0].strip(), pb.FileTarget()
    name = ""
    f = pb.FileTarget()
    for field in fields:
        key, sep, value = field.partition("=")
        key = key.strip().lower()
        if not sep:
            raise ValueError(f"invalid field {field!r}: expected KEY=VALUE")
        if key in ("source", "src"):
            name = value.strip()
        elif key == "target":
            f.name = value.strip()
        elif key in ("uid", "gid"):
            if not value.strip().isdigit():
                raise ValueError(f"invalid {key} {value!r}: expected a number")
            setattr(f, key, value.strip())
        elif key == "mode":
            f.mode = _octal(key, value, 0o777)
        else:
            raise ValueError(f"unknown field {key!r}: use source, target, uid, gid or mode")
    if not name:
        raise ValueError(f"source=NAME is required (the {word}'s name)")
    return name, f


def _secret(text: str, hint: str) -> pb.SecretReference:
    name, f = parsed(lambda v: parse_file_ref(v, "secret"), text, hint)
    return pb.SecretReference(secret_name=name, file=f)


def _config(text: str, hint: str) -> pb.ConfigReference:
    name, f = parsed(lambda v: parse_file_ref(v, "config"), text, hint)
    return pb.ConfigReference(config_name=name, file=f)


def apply_storage(spec: pb.ServiceSpec, f: StorageFlags) -> None:
    """`service create`: the spec gets the given mounts, secrets and configs."""
    c = spec.task.container
    for text in f.mounts or []:
        c.mounts.append(parsed(parse_mount, text, "--mount"))
    for text in f.secrets or []:
        c.secrets.append(_secret(text, "--secret"))
    for text in f.configs or []:
        c.configs.append(_config(text, "--config"))


R = TypeVar("R", pb.SecretReference, pb.ConfigReference)


def _keys(r: pb.SecretReference | pb.ConfigReference) -> tuple[str, str]:
    return (r.secret_name, r.secret_id) if isinstance(r, pb.SecretReference) else (r.config_name, r.config_id)


def _changed(refs: Sequence[R], gone: Sequence[str], added: list[R], hint: str) -> list[R]:
    """`refs` without those --*-rm names (by name or id), then the added ones."""
    drop: set[int] = set()
    for name in gone:
        hits = {i for i, r in enumerate(refs) if name in _keys(r)}
        if not hits:
            raise typer.BadParameter(f"the service does not use {name!r}", param_hint=hint)
        drop |= hits
    return [r for i, r in enumerate(refs) if i not in drop] + added


def apply_storage_changes(spec: pb.ServiceSpec, f: StorageUpdateFlags) -> pb.ServiceSpec:
    """`service update`: a copy of `spec` with the --*-rm flags applied, then
    the --*-add ones (a mount added at a target already mounted replaces it,
    as docker does; a secret swapped at the same target is a rotation)."""
    out = pb.ServiceSpec()
    out.CopyFrom(spec)
    c = out.task.container
    if f.mount_rm or f.mount_add:
        added = [parsed(parse_mount, t, "--mount-add") for t in f.mount_add or []]
        gone = set(f.mount_rm or [])
        missing = gone - {m.target for m in c.mounts}
        if missing:
            raise typer.BadParameter(f"the service has no mount at {sorted(missing)[0]!r}", param_hint="--mount-rm")
        gone |= {m.target for m in added}
        kept = [m for m in c.mounts if m.target not in gone]
        del c.mounts[:]
        c.mounts.extend(kept + added)
    if f.secret_rm or f.secret_add:
        secrets = _changed(
            list(c.secrets), f.secret_rm or [], [_secret(t, "--secret-add") for t in f.secret_add or []], "--secret-rm"
        )
        del c.secrets[:]
        c.secrets.extend(secrets)
    if f.config_rm or f.config_add:
        configs = _changed(
            list(c.configs), f.config_rm or [], [_config(t, "--config-add") for t in f.config_add or []], "--config-rm"
        )
        del c.configs[:]
        c.configs.extend(configs)
    return out
