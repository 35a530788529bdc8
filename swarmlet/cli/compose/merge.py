"""Several `-c` files merged as Compose merges them: mappings key by key
(later files win), sequences appended, except the shell commands (command,
entrypoint, healthcheck.test), which the later file replaces, and the values
that come as a list or a mapping (environment, labels, ...), which are merged
as mappings. Lists whose entries have an identity (ports, volumes, secrets,
configs) are appended here; the reader keeps the last entry of each identity.
Positions travel with the values, so errors name the file that set them.
"""

from __future__ import annotations

import copy
from typing import Any

from swarmlet.cli.compose.yamlpos import Pos, PosDict, PosList

# Replaced, not appended: a command is one value, not a list of values.
_REPLACED = {("services", "*", "command"), ("services", "*", "entrypoint"), ("services", "*", "healthcheck", "test")}

# Written either as a list of K=V or as a mapping: merged as mappings.
_KV = {
    ("services", "*", "environment"),
    ("services", "*", "labels"),
    ("services", "*", "deploy", "labels"),
    ("services", "*", "sysctls"),
    ("services", "*", "extra_hosts"),
    ("networks", "*", "labels"),
    ("volumes", "*", "labels"),
    ("secrets", "*", "labels"),
    ("configs", "*", "labels"),
}


def _match(path: tuple[str, ...], patterns: set[tuple[str, ...]]) -> bool:
    for p in patterns:
        if len(p) == len(path) and all(a == "*" or a == b for a, b in zip(p, path, strict=True)):
            return True
    return False


def _as_kv(value: Any, sep: str) -> Any:
    """A K=V list as a positioned mapping (anything else unchanged)."""
    if not isinstance(value, PosList):
        return value
    out = PosDict()
    out.pos = value.pos
    out.key_pos = {}
    for i, item in enumerate(value):
        if not isinstance(item, str):
            return value  # the reader reports the bad entry with its position
        k, found, v = item.partition(sep)
        out[k] = v if found else None
        out.key_pos[k] = value.where(i)
    return out


def _merge(base: Any, over: Any, path: tuple[str, ...]) -> Any:
    if _match(path, _KV):
        sep = ":" if path[-1] == "extra_hosts" else "="
        base, over = _as_kv(base, sep), _as_kv(over, sep)
    if isinstance(base, PosDict) and isinstance(over, PosDict):
        out = PosDict(base)
        out.pos = base.pos
        out.key_pos = dict(base.key_pos)
        for k, v in over.items():
            out[k] = _merge(base[k], v, (*path, k)) if k in base else v
            out.key_pos[k] = over.where(k)
        return out
    if isinstance(base, PosList) and isinstance(over, PosList) and not _match(path, _REPLACED):
        merged = PosList([*base, *over])
        merged.pos = over.pos
        merged.item_pos = [*base.item_pos, *over.item_pos]
        return merged
    return over


def merge(docs: list[PosDict]) -> PosDict:
    """The application model of several files, in order."""
    out = copy.deepcopy(docs[0])
    for doc in docs[1:]:
        out = _merge(out, doc, ())
    return out


def positioned(value: Any, pos: Pos) -> Any:
    """Give a plain value (built by the program) a position, recursively."""
    if isinstance(value, dict) and not isinstance(value, PosDict):
        d = PosDict({k: positioned(v, pos) for k, v in value.items()})
        d.pos, d.key_pos = pos, {k: pos for k in value}
        return d
    if isinstance(value, list) and not isinstance(value, PosList):
        lst = PosList(positioned(v, pos) for v in value)
        lst.pos, lst.item_pos = pos, [pos] * len(value)
        return lst
    return value
