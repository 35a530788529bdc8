"""The daemon: composition root, membership (init/join/leave/restore), on-disk node files."""
