"""The daemon: composition root (daemon), membership (init/join/leave/restore),
role changes (roles), the local API (localapi), on-disk node files (files),
configuration (config) and address discovery (addresses)."""
