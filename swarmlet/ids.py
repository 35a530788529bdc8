"""Object ids: 25 random lowercase alphanumerics (~129 bits), unguessable and
collision-free without coordination. Every kind of object (cluster, node,
service, task, network) takes its id from here; the pure core receives
`new_id` as a parameter so that it stays deterministic under test."""

from __future__ import annotations

import secrets
import string

ALPHABET = string.ascii_lowercase + string.digits
LENGTH = 25


_SPACE = len(ALPHABET) ** LENGTH


def new_id() -> str:
    # One draw of 129 random bits written in base 36 (the leader makes 10,000
    # of these in one round: 25 separate secrets.choice calls each cost ~10x).
    n = secrets.randbelow(_SPACE)
    out = []
    for _ in range(LENGTH):
        n, d = divmod(n, 36)
        out.append(ALPHABET[d])
    return "".join(out)
