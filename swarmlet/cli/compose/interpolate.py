"""Variable interpolation in Compose values, as `docker stack deploy` does it:
`$VAR`, `${VAR}`, `${VAR:-default}` / `${VAR-default}`, `${VAR:?error}` /
`${VAR?error}`, `${VAR:+other}` / `${VAR+other}`, and `$$` for a literal `$`.
Defaults may hold variables themselves. Values come from the environment,
then from a `.env` file beside the first Compose file (the environment wins).
Only values are interpolated, never keys.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from swarmlet.cli.compose.yamlpos import PosDict, PosList

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class InterpolationError(ValueError):
    pass


def _find_close(text: str, start: int) -> int:
    """Index of the `}` closing the `${` whose body starts at `start`."""
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise InterpolationError(f"unclosed ${{ in {text!r}")


def _braced(body: str, env: Mapping[str, str]) -> str:
    m = _NAME.match(body)
    if m is None:
        raise InterpolationError(f"invalid variable name in ${{{body}}}")
    name, rest = m.group(0), body[m.end() :]
    value = env.get(name)
    if not rest:
        return value if value is not None else ""
    for op in (":-", ":?", ":+", "-", "?", "+"):
        if rest.startswith(op):
            arg = rest[len(op) :]
            unset_or_empty = value is None or (op.startswith(":") and value == "")
            kind = op[-1]
            if kind == "-":
                return interpolate_text(arg, env) if unset_or_empty else str(value)
            if kind == "+":
                return "" if unset_or_empty else interpolate_text(arg, env)
            # "?": required
            if unset_or_empty:
                msg = interpolate_text(arg, env) if arg else ""
                what = "not set" if value is None else "empty"
                raise InterpolationError(f"required variable {name} is {what}" + (f": {msg}" if msg else ""))
            return str(value)
    raise InterpolationError(f"invalid interpolation format ${{{body}}}")


def interpolate_text(text: str, env: Mapping[str, str]) -> str:
    """`text` with every variable replaced (raises InterpolationError)."""
    if "$" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "$":
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _find_close(text, i + 2)
            out.append(_braced(text[i + 2 : end], env))
            i = end + 1
        else:
            m = _NAME.match(text, i + 1)
            if m is None:
                # A lone `$` (e.g. "cost: 5$"): Compose keeps it.
                out.append("$")
                i += 1
            else:
                out.append(env.get(m.group(0), ""))
                i = m.end()
    return "".join(out)


def interpolate(data: Any, env: Mapping[str, str], path: str = "") -> Any:
    """Interpolate every string value of a parsed file, in place for
    positioned containers. Errors name the file, line and key."""
    if isinstance(data, PosDict):
        for key in list(data):
            sub = f"{path}.{key}" if path else key
            value = data[key]
            if isinstance(value, str):
                try:
                    data[key] = interpolate_text(value, env)
                except InterpolationError as e:
                    raise InterpolationError(f"{data.where(key)}: {sub}: {e}") from None
            else:
                interpolate(value, env, sub)
        return data
    if isinstance(data, PosList):
        for i, value in enumerate(data):
            sub = f"{path}[{i}]"
            if isinstance(value, str):
                try:
                    data[i] = interpolate_text(value, env)
                except InterpolationError as e:
                    raise InterpolationError(f"{data.where(i)}: {sub}: {e}") from None
            else:
                interpolate(value, env, sub)
        return data
    return data


_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*)$")


def read_env_file(path: str) -> dict[str, str]:
    """A `.env` file: KEY=VALUE lines, `#` comments, optional quotes and
    `export`. A malformed line is an error naming the file and line."""
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            m = _ENV_LINE.match(line)
            if m is None:
                raise InterpolationError(f"{path}:{n}: expected KEY=VALUE")
            key, value = m.group(1), m.group(2).strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
                if raw.strip().endswith('"'):
                    value = value.replace("\\n", "\n")
            elif " #" in value:
                value = value.split(" #", 1)[0].rstrip()
            out[key] = value
    return out


def environment_for(first_file: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What variables interpolate to: the `.env` beside the first file,
    overridden by the process environment."""
    env: dict[str, str] = {}
    dotenv = os.path.join(os.path.dirname(os.path.abspath(first_file)), ".env")
    if os.path.isfile(dotenv):
        env.update(read_env_file(dotenv))
    env.update(os.environ if environ is None else environ)
    return env
