"""The pure core: decisions over a snapshot of the cluster state.

Nothing here touches a socket, a clock, a thread, Docker, gRPC or the kernel:
time and id generation are parameters. Imports are limited to the generated
api modules and swarmlet.errors (CI checks this with import-linter).
"""
