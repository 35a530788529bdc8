"""The node agent: dispatcher session, executor, container runtime and overlay wiring."""
