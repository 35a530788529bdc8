"""Bounds on user input (issue 13): sizes and counts of names, labels, env,
args, constraints and health commands, durations that are finite and
bounded, and a whole service spec small enough that a task carrying it fits
an agent's session message.

Why bound at all: everything a user writes is replicated in a Raft entry,
copied into every task of the service and sent to nodes in their session
messages. Issue 14 found a 2.5 MB label making a 5.27 MB session message that
jammed a node; a stop grace period of infinity wedged a rolling update
(OverflowError on docker stop); a health interval of infinity left a task
ASSIGNED forever. Each check names the field and the limit, and runs before
anything is proposed, so bad input changes nothing.

The limits are generous for real use (Docker's own CLI has none for most of
these; ARG_MAX and the engine's API bound them there).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.core.units import fmt_bytes

MAX_LABELS = 128
MAX_LABEL_KEY = 256
MAX_LABEL_VALUE = 4096
MAX_ENV = 1024
MAX_ENV_ENTRY = 32 * 1024
MAX_ARGS = 1024  # --entrypoint/command words, and args, each
MAX_ARG = 32 * 1024
MAX_CONSTRAINTS = 64
MAX_CONSTRAINT = 1024
MAX_HEALTH_WORDS = 64
MAX_HEALTH_WORD = 8 * 1024
MAX_IMAGE = 512
MAX_NETWORKS = 32
MAX_PORTS = 256
MAX_HOSTNAME = 253
# A serialized ServiceSpec. Every task carries a copy and several tasks share
# a session message (4 MiB by gRPC's default): 256 KiB leaves room for many.
MAX_SPEC_BYTES = 256 * 1024
# Any duration a user gives: finite, not negative, at most a year.
MAX_DURATION = 365 * 24 * 3600.0
# Messages between the CLI and its daemon (a backup or a listing of a large
# cluster); the unix socket is root-only, so a large bound costs nothing.
MAX_LOCAL_MESSAGE = 512 * 1024 * 1024


class TooLarge(errors.Invalid):
    """An input over one of the bounds above."""


def check_duration(value: float, what: str) -> None:
    """Finite, not negative, at most MAX_DURATION seconds."""
    if math.isnan(value) or math.isinf(value):
        raise errors.Invalid(f"{what}: {value} is not a duration (it must be finite)")
    if value < 0:
        raise errors.Invalid(f"{what} cannot be negative")
    if value > MAX_DURATION:
        raise errors.Invalid(f"{what} is {value:g}s, more than the limit of {MAX_DURATION:g}s (a year)")


def _check_count(items: Iterable[object], limit: int, what: str) -> None:
    n = sum(1 for _ in items)
    if n > limit:
        raise TooLarge(f"{n} {what}, more than the limit of {limit}")


def _check_text(value: str, limit: int, what: str) -> None:
    size = len(value.encode())
    if size > limit:
        raise TooLarge(f"{what} is {fmt_bytes(size)}, more than the limit of {fmt_bytes(limit)}")


def check_labels(labels: Mapping[str, str], what: str = "labels") -> None:
    _check_count(labels, MAX_LABELS, what)
    for k, v in labels.items():
        if not k:
            raise errors.Invalid(f"{what}: a label needs a key")
        _check_text(k, MAX_LABEL_KEY, f"{what}: the key {k[:40]!r}")
        _check_text(v, MAX_LABEL_VALUE, f"{what}: the value of {k[:40]!r}")


def _check_words(words: Iterable[str], count: int, size: int, what: str) -> None:
    words = list(words)
    _check_count(words, count, what)
    for i, w in enumerate(words):
        _check_text(w, size, f"{what} [{i}]")


def check_container(c: pb.ContainerSpec) -> None:
    _check_text(c.image, MAX_IMAGE, "the image name")
    _check_words(c.command, MAX_ARGS, MAX_ARG, "command words")
    _check_words(c.args, MAX_ARGS, MAX_ARG, "arguments")
    _check_words(c.env, MAX_ENV, MAX_ENV_ENTRY, "environment variables (--env)")
    check_labels(c.labels, "container labels (--container-label)")
    check_duration(c.stop_grace_period, "--stop-grace-period")
    h = c.healthcheck
    _check_words(h.test, MAX_HEALTH_WORDS, MAX_HEALTH_WORD, "health command words (--health-cmd)")
    check_duration(h.interval, "--health-interval")
    check_duration(h.timeout, "--health-timeout")
    check_duration(h.start_period, "--health-start-period")


def check_task_spec(t: pb.TaskSpec) -> None:
    check_container(t.container)
    _check_words(t.placement.constraints, MAX_CONSTRAINTS, MAX_CONSTRAINT, "placement constraints")
    check_duration(t.restart.delay, "--restart-delay")
    check_duration(t.restart.window, "--restart-window")


def check_update_config(u: pb.UpdateConfig, flag: str) -> None:
    check_duration(u.delay, f"--{flag}-delay")
    check_duration(u.monitor, f"--{flag}-monitor")
    if math.isnan(u.max_failure_ratio):
        raise errors.Invalid(f"--{flag}-max-failure-ratio: NaN is not a ratio")


def check_service_spec(spec: pb.ServiceSpec) -> None:
    """Every bound of a service spec, the size of the whole last (a spec
    whose parts are each fine may still be too large together)."""
    check_labels(spec.labels, "service labels (--label)")
    check_task_spec(spec.task)
    check_update_config(spec.update, "update")
    check_update_config(spec.rollback, "rollback")
    _check_count(spec.networks, MAX_NETWORKS, "networks")
    _check_count(spec.endpoint.ports, MAX_PORTS, "published ports")
    size = spec.ByteSize()
    if size > MAX_SPEC_BYTES:
        raise TooLarge(
            f"the service spec is {fmt_bytes(size)}, more than the limit of {fmt_bytes(MAX_SPEC_BYTES)}: every task "
            "carries it to its node, so labels, environment, arguments and health commands must fit together"
        )


def check_network_spec(spec: pb.NetworkSpec) -> None:
    check_labels(spec.labels, "network labels (--label)")


def check_cluster_spec(spec: pb.ClusterSpec) -> None:
    check_duration(spec.heartbeat_period, "heartbeat period")
    check_duration(spec.node_down_after, "node down after")


def check_hostname(name: str, what: str = "hostname") -> None:
    """A host name as nodes report it: bounded, printable, no separators
    that would let it pose as a path or a second line in a listing."""
    _check_text(name, MAX_HOSTNAME, what)
    bad = next((ch for ch in name if ch in "/\\" or not ch.isprintable() or ch.isspace()), None)
    if bad is not None:
        raise errors.Invalid(f"{what} {name[:40]!r} contains {bad!r}: use letters, digits, '-', '_' and '.'")
