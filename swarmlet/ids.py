"""Object ids: 25 random lowercase alphanumerics (~129 bits), unguessable and
collision-free without coordination. Every kind of object (cluster, node,
service, task, network) takes its id from here; the pure core receives
`new_id` as a parameter so that it stays deterministic under test."""

from __future__ import annotations

import secrets
import string

ALPHABET = string.ascii_lowercase + string.digits
LENGTH = 25


def new_id() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
