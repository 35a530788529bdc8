"""Typed reading of a (merged, interpolated) Compose tree: every value is
checked for its type and range, and an error names the file, the line and the
key, e.g. `stack.yml:14: services.web.deploy.replicas: expected an integer`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from swarmlet.cli.compose.yamlpos import Pos, PosDict, PosList

T = TypeVar("T")


class ComposeError(ValueError):
    """A Compose file that cannot be deployed: the message starts with
    `file:line: key:`."""


class Node:
    """A value of the tree with its key path and position."""

    def __init__(self, value: Any, path: str, pos: Pos) -> None:
        self.value = value
        self.path = path
        self.pos = pos

    def fail(self, message: str) -> NoReturn:
        raise ComposeError(f"{self.pos}: {self.path}: {message}")

    # ---- children ----
    def keys(self) -> list[str]:
        return list(self.mapping().value)

    def has(self, key: str) -> bool:
        return isinstance(self.value, dict) and key in self.value

    def child(self, key: str) -> Node:
        m = self.mapping()
        d = m.value
        pos = d.where(key) if isinstance(d, PosDict) else self.pos
        return Node(d.get(key), f"{self.path}.{key}" if self.path else key, pos)

    def items(self) -> list[tuple[str, Node]]:
        return [(k, self.child(k)) for k in self.keys()]

    def elements(self) -> list[Node]:
        seq = self.list_()
        v = seq.value
        return [Node(x, f"{self.path}[{i}]", v.where(i) if isinstance(v, PosList) else self.pos) for i, x in enumerate(v)]

    # ---- types ----
    def mapping(self) -> Node:
        if not isinstance(self.value, dict):
            self.fail(f"expected a mapping, got {_kind(self.value)}")
        return self

    def list_(self) -> Node:
        if not isinstance(self.value, list):
            self.fail(f"expected a list, got {_kind(self.value)}")
        return self

    def string(self) -> str:
        v = self.value
        if isinstance(v, bool) or v is None or isinstance(v, (dict, list)):
            self.fail(f"expected a string, got {_kind(v)}")
        return str(v)

    def integer(self, minimum: int | None = None, maximum: int | None = None) -> int:
        v = self.value
        if isinstance(v, bool):
            self.fail("expected an integer")
        if isinstance(v, str) and v.strip().lstrip("-").isdigit():
            v = int(v)
        if not isinstance(v, int):
            self.fail("expected an integer")
        if minimum is not None and v < minimum:
            self.fail(f"must be at least {minimum}, got {v}")
        if maximum is not None and v > maximum:
            self.fail(f"must be at most {maximum}, got {v}")
        return v

    def number(self, minimum: float | None = None) -> float:
        v = self.value
        if isinstance(v, bool):
            self.fail("expected a number")
        try:
            f = float(v)
        except (TypeError, ValueError):
            self.fail("expected a number")
        if f != f or f in (float("inf"), float("-inf")):
            self.fail("expected a finite number")
        if minimum is not None and f < minimum:
            self.fail(f"must be at least {minimum:g}")
        return f

    def boolean(self) -> bool:
        v = self.value
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.lower() in ("true", "false", "yes", "no"):
            return v.lower() in ("true", "yes")
        self.fail("expected true or false")

    def choice(self, options: tuple[str, ...]) -> str:
        s = self.string()
        if s not in options:
            self.fail(f"expected one of {', '.join(options)}, got {s!r}")
        return s

    def parsed(self, parser: Callable[[str], T], what: str) -> T:
        """A string parsed by one of the CLI's parsers (durations, sizes...)."""
        raw = self.value
        text = str(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else self.string()
        try:
            return parser(text)
        except ValueError as e:
            self.fail(f"invalid {what}: {e}")

    def strings(self) -> list[str]:
        """A list of strings, or one string as a one-element list."""
        if isinstance(self.value, str):
            return [self.value]
        return [e.string() for e in self.elements()]

    def command(self) -> list[str]:
        """A command: a list, or a string split as a shell would (no shell)."""
        import shlex

        if isinstance(self.value, str):
            try:
                return shlex.split(self.value)
            except ValueError as e:
                self.fail(f"cannot split the command: {e}")
        return self.strings()

    def dict_or_list(self, sep: str = "=", allow_none: bool = True) -> dict[str, str | None]:
        """`environment:`/`labels:`-style values: a mapping, or a list of
        "K=V" (a bare "K" has no value)."""
        out: dict[str, str | None] = {}
        if isinstance(self.value, dict):
            for k, n in self.items():
                if n.value is None:
                    if not allow_none:
                        n.fail("a value is required")
                    out[k] = None
                elif isinstance(n.value, (dict, list)):
                    n.fail(f"expected a string, got {_kind(n.value)}")
                else:
                    out[k] = _scalar(n.value)
            return out
        for e in self.elements():
            text = e.string()
            k, found, v = text.partition(sep)
            if not k:
                e.fail(f"expected KEY{sep}VALUE, got {text!r}")
            if not found and not allow_none:
                e.fail(f"expected KEY{sep}VALUE, got {text!r}")
            out[k] = v if found else None
        return out


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _kind(v: Any) -> str:
    if v is None:
        return "nothing"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return type(v).__name__


def root(tree: PosDict) -> Node:
    return Node(tree, "", tree.pos)
