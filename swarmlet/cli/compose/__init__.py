"""Compose files for `swarmlet stack`: YAML with positions, interpolation, merging, checking, conversion."""
