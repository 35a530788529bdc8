"""Overlay networking on the node: rule rendering, link wiring, embedded DNS."""
