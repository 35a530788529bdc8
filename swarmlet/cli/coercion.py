"""Plain option values without pydantic (issue 15: CLI start-up).

typer 0.29 coerces every parameter's value through a pydantic TypeAdapter,
built the first time the parameter is processed, even when the value is its
default None: any command with an option imports pydantic (~120 ms) and
builds one adapter per parameter. swarmlet's parameters are all plain (str,
int, float, bool and lists of them, some numbers with min/max), and their
values are nearly always already of the right type (a default, a string, a
flag's bool) or a number written in digits.

For those parameters, PlainRuntimeParam gives typer the value pydantic would
give, in the cases where that is certain: a value already of the type (and a
number within min/max), or a number string of optional "-", ASCII digits and,
for a float, one "." between digits. Any other value (`--replicas abc`, " 5",
"1_000", "1e3", a number out of range) goes to typer's own coercion, built on
first need, so that its result and its error message are typer's. Other
annotations (files, paths, enums, literals, datetimes, parser=, clamp=) are
left to typer altogether.

install() replaces typer.core.build_runtime_param, the factory typer's
parameters call (once each, on first use) for their coercion. typer is pinned
in pyproject.toml; tests/unit/cli/test_coercion.py checks that the hook is
still there and that the results equal typer's own.
"""

from __future__ import annotations

import functools
from typing import Any, get_args, get_origin

import typer.core
from typer import _coercion

_PLAIN = (str, int, float, bool)

# Not a value: "ask typer".
_TYPER = object()


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _number(text: str, kind: type) -> Any:
    """int or float of `text` when written as plain digits (the only form whose
    reading is certain), else _TYPER. Ints are kept below 19 digits, far from
    Python's and pydantic's limits on long numbers."""
    body = text[1:] if text.startswith("-") else text
    if kind is int:
        return int(text) if _digits(body) and len(body) < 19 else _TYPER
    whole, dot, fraction = body.partition(".")
    return float(text) if _digits(whole) and (not dot or _digits(fraction)) else _TYPER


def _plain(value: Any, kind: type, low: float | None, high: float | None) -> Any:
    """`value` as one `kind`, or _TYPER when that is for typer to decide."""
    if kind is str or kind is bool:
        return value if type(value) is kind else _TYPER
    number: Any
    if type(value) is kind:
        number = value
    elif type(value) is str:
        number = _number(value, kind)
    else:
        return _TYPER
    if number is _TYPER or number != number:  # NaN: against min/max, pydantic decides
        return _TYPER
    if (low is not None and number < low) or (high is not None and number > high):
        return _TYPER  # typer's message names the bound
    return number


class PlainRuntimeParam(_coercion.RuntimeParam):
    """Coercion of one plain parameter. No fields of its own (typer's
    annotation and parameter_info say everything), so no dataclass to build
    at import: this module is loaded by `swarmlet --help` too."""

    @functools.cached_property
    def typer_own(self) -> _coercion.RuntimeParam:
        """typer's coercion (pydantic) of this parameter, for any other value."""
        return _coercion.build_runtime_param(_coercion.resolve_type_descriptor(self.annotation, self.parameter_info))

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        kind, many = plain_kind(self.annotation)
        assert kind is not None  # build_runtime_param made sure
        low, high = self.parameter_info.min, self.parameter_info.max
        if not many:
            result = _plain(value, kind, low, high)
        elif isinstance(value, (list, tuple)):
            items = [_plain(item, kind, low, high) for item in value]
            result = _TYPER if any(item is _TYPER for item in items) else items
        else:
            result = _TYPER
        if result is _TYPER:
            return self.typer_own._coerce_value(value, param=param, ctx=ctx)
        return result


def plain_kind(annotation: Any) -> tuple[type | None, bool]:
    """(str, int, float or bool, whether a list of it), or (None, _) for any
    other annotation."""
    many = get_origin(annotation) is list
    if many:
        (annotation,) = get_args(annotation)
    return (annotation if annotation in _PLAIN else None), many


def build_runtime_param(descriptor: _coercion.TypeDescriptor) -> _coercion.RuntimeParam:
    """typer's factory, with plain parameters kept away from pydantic."""
    info = descriptor.parameter_info
    plain = descriptor.file_annotation is None and info.parser is None and not info.clamp
    if not plain or plain_kind(descriptor.annotation)[0] is None:
        return _coercion.build_runtime_param(descriptor)
    return PlainRuntimeParam(annotation=descriptor.annotation, parameter_info=info)


def install() -> None:
    """Route typer's parameters through build_runtime_param (once; harmless
    again). Should a typer upgrade move the hook, nothing is replaced: the CLI
    stays correct, only slower, and the unit test says so."""
    if getattr(typer.core, "build_runtime_param", None) is _coercion.build_runtime_param:
        typer.core.build_runtime_param = build_runtime_param  # type: ignore[attr-defined]  # imported there, not exported
