"""YAML with positions: Compose files parsed with PyYAML's safe loader into
plain dicts and lists that remember where each key came from, so that every
error can name the file, the line and the key.

Anchors, aliases and merge keys (`<<: *defaults`) are PyYAML's own (the safe
loader resolves them); nothing but the standard YAML types is constructed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml


@dataclass(frozen=True)
class Pos:
    """Where a value was written: file and 1-based line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class PosDict(dict[str, Any]):
    """A mapping that knows the position of each of its keys (and its own)."""

    pos: Pos
    key_pos: dict[str, Pos]

    def where(self, key: str) -> Pos:
        return self.key_pos.get(key, self.pos)


class PosList(list[Any]):
    pos: Pos
    item_pos: list[Pos]

    def where(self, index: int) -> Pos:
        return self.item_pos[index] if 0 <= index < len(self.item_pos) else self.pos


class ComposeFileError(ValueError):
    """A file that cannot be read or is not valid YAML; names file and line."""


def _loader_for(filename: str) -> type[yaml.SafeLoader]:
    class Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no types
        pass

    def pos_of(node: yaml.Node) -> Pos:
        return Pos(filename, node.start_mark.line + 1)

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> PosDict:
        loader.flatten_mapping(node)  # resolves `<<` merge keys into node.value
        out = PosDict()
        out.pos = pos_of(node)
        out.key_pos = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                # Compose keys are strings; YAML would happily make `1:` an int.
                key = str(key) if isinstance(key, (int, float, bool)) else key
            if not isinstance(key, str):
                raise ComposeFileError(f"{pos_of(key_node)}: a mapping key must be a string")
            if key in out and key_node.start_mark.line + 1 != out.key_pos[key].line:
                raise ComposeFileError(f"{pos_of(key_node)}: key {key!r} is given twice in the same mapping")
            out[key] = loader.construct_object(value_node, deep=True)
            out.key_pos[key] = pos_of(key_node)
        return out

    def construct_sequence(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> PosList:
        out = PosList(loader.construct_object(child, deep=True) for child in node.value)
        out.pos = pos_of(node)
        out.item_pos = [pos_of(child) for child in node.value]
        return out

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, construct_sequence)
    return Loader


def load(text: str, filename: str) -> PosDict:
    """Parse one Compose file; its top level must be a mapping."""
    try:
        data = yaml.load(text, Loader=_loader_for(filename))  # noqa: S506  (a SafeLoader subclass)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise ComposeFileError(f"{filename}:{line}: invalid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ComposeFileError(f"{filename}: invalid YAML: {e}") from None
    if data is None:
        raise ComposeFileError(f"{filename}: the file is empty")
    if not isinstance(data, PosDict):
        raise ComposeFileError(f"{filename}:1: the top level must be a mapping (services:, networks:, ...)")
    return data


def plain(value: Any) -> Any:
    """The same data without positions (for printing and comparing)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
