"""Pure parsers for the command line's values: sizes, CPUs, durations, K=V lists,
published ports and addresses. (Placement constraints have one grammar, in
swarmlet.core.constraints, shared with the scheduler.)

Nothing here touches the network, the clock or typer: every function takes a string
and returns a value or raises ValueError with a message meant for the user, so the
commands can turn it into a usage error and the tests need no CLI at all.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation

from swarmlet.api import objects_pb2 as pb

# ---- sizes -----------------------------------------------------------------

# Docker's memory flags are binary: "64m" is 64 MiB. A trailing "b"/"ib" is accepted
# so "64MB" and "64MiB" both mean what a Docker user expects.
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgtp]?)(i?b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(text: str) -> int:
    """ "64M", "1.5G", "512k", "100" (bytes) -> bytes (binary units, like Docker)."""
    m = _SIZE_RE.match(text)
    if not m:
        raise ValueError(
            f"invalid size {text!r}: expected a number with an optional unit b, k, m, g, t or p (e.g. 64M, 1.5G, 512k)"
        )
    number, unit, _ = m.groups()
    # Decimal keeps "1.1G" exact instead of drifting through binary floats.
    return int(Decimal(number) * _SIZE_UNITS[unit.lower()])


# ---- CPUs --------------------------------------------------------------------


def parse_cpus(text: str) -> int:
    """ "0.5" -> 500000000 nano CPUs. Rejects negatives and sub-nano precision."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"invalid CPU count {text!r}: expected a number such as 0.5 or 2") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"invalid CPU count {text!r}: must be a non-negative number")
    nanos = value * 1_000_000_000
    if nanos != nanos.to_integral_value():
        raise ValueError(f"invalid CPU count {text!r}: too precise (at most 9 decimal places)")
    return int(nanos)


# ---- durations ---------------------------------------------------------------

# Go's time.ParseDuration syntax, which Docker users type: "1m30s", "500ms", "2h".
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),
    "μs": Decimal("1e-6"),
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}


def parse_duration(text: str) -> float:
    """ "10s", "1m30s", "500ms", "2h" -> seconds. A bare "0" is zero; other bare
    numbers are refused (as in Docker) because "10" could mean seconds or nanoseconds."""
    s = text.strip()
    if s in ("0", "+0"):
        return 0.0
    if s.startswith("-"):
        raise ValueError(f"invalid duration {text!r}: must not be negative")
    if s.startswith("+"):
        s = s[1:]
    if not s:
        raise ValueError("invalid duration '': expected e.g. 10s, 1m30s, 500ms or 2h")
    total = Decimal(0)
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m:
            if re.fullmatch(r"\d+(\.\d*)?", s[pos:]):
                raise ValueError(f"invalid duration {text!r}: missing unit (use ns, us, ms, s, m or h, e.g. {s}s)")
            raise ValueError(f"invalid duration {text!r}: expected e.g. 10s, 1m30s, 500ms or 2h")
        total += Decimal(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return float(total)


# ---- K=V ---------------------------------------------------------------------


def parse_kv(text: str, *, what: str = "label") -> tuple[str, str]:
    """ "K=V" -> (K, V); "K" -> (K, "") as Docker does for labels."""
    key, sep, value = text.partition("=")
    if not key.strip():
        raise ValueError(f"invalid {what} {text!r}: expected KEY=VALUE with a non-empty key")
    if key != key.strip():
        raise ValueError(f"invalid {what} {text!r}: the key must not contain spaces")
    return key, value if sep else ""


def parse_kv_list(items: Iterable[str], *, what: str = "label") -> dict[str, str]:
    """Repeated K=V flags -> dict; a later flag for the same key wins."""
    out: dict[str, str] = {}
    for item in items:
        k, v = parse_kv(item, what=what)
        out[k] = v
    return out


def parse_env(items: Iterable[str], environ: Mapping[str, str]) -> list[str]:
    """--env values -> "K=V" list. A bare "K" takes K's value from the caller's
    environment and is dropped when unset, which is Docker's behaviour."""
    out: list[str] = []
    for item in items:
        key, sep, value = item.partition("=")
        if not key or key != key.strip() or " " in key:
            raise ValueError(f"invalid environment variable {item!r}: expected KEY=VALUE")
        if sep:
            out.append(f"{key}={value}")
        elif key in environ:
            out.append(f"{key}={environ[key]}")
    return out


# ---- addresses ---------------------------------------------------------------


def parse_port(text: str | int) -> int:
    try:
        port = int(str(text).strip())
    except ValueError:
        raise ValueError(f"invalid port {text!r}: expected a number from 1 to 65535") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"invalid port {text!r}: expected a number from 1 to 65535")
    return port


_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def parse_host_port(text: str, default_port: int | None = None) -> str:
    """ "10.0.0.1:4242", "mgr1:4242", "[fd00::1]:4242" -> normalized "host:port".
    Without a port, default_port is used when given, else it is an error."""
    s = text.strip()
    if not s:
        raise ValueError("missing address: expected HOST:PORT (e.g. 10.0.0.1:4242)")
    if "://" in s:
        raise ValueError(f"invalid address {text!r}: expected HOST:PORT without a scheme")
    host: str
    port_text: str | None
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            raise ValueError(f"invalid address {text!r}: unterminated '[' in IPv6 address")
        host, rest = s[1:end], s[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"invalid address {text!r}: expected [IPv6]:PORT")
        port_text = rest[1:] if rest else None
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"invalid address {text!r}: {host!r} is not an IPv6 address") from None
    elif s.count(":") > 1:
        raise ValueError(f"invalid address {text!r}: write IPv6 addresses as [ADDR]:PORT")
    else:
        host, sep, port_text_raw = s.partition(":")
        port_text = port_text_raw if sep else None
        if not _HOSTNAME_RE.match(host):
            raise ValueError(f"invalid address {text!r}: {host!r} is not a valid host name or IP")
    if port_text is None:
        if default_port is None:
            raise ValueError(f"invalid address {text!r}: missing port (expected HOST:PORT)")
        port = default_port
    else:
        try:
            port = parse_port(port_text)
        except ValueError as e:
            raise ValueError(f"invalid address {text!r}: {e}") from None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_ip(text: str) -> str:
    """An advertise address: an IPv4/IPv6 literal, normalized."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise ValueError(f"invalid IP address {text!r}") from None


# ---- published ports ------------------------------------------------------

_PROTOCOLS = {"tcp": pb.PortConfig.TCP, "udp": pb.PortConfig.UDP, "sctp": pb.PortConfig.SCTP}
_PUBLISH_MODES = {"ingress": pb.PortConfig.INGRESS, "host": pb.PortConfig.HOST}


def _port_number(text: str, what: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not 1 <= n <= 65535:
        raise ValueError(f"{what} {n} out of range (1-65535)")
    return n


def _port_range(text: str, what: str) -> list[int]:
    """`80` or `80-82` -> the ports."""
    lo, sep, hi = text.strip().partition("-")
    first = _port_number(lo, what)
    if not sep:
        return [first]
    last = _port_number(hi, what)
    if last < first:
        raise ValueError(f"invalid {what} range {text!r}: the end is below the start")
    return list(range(first, last + 1))


def _protocol(text: str) -> pb.PortConfig.Protocol:
    proto = _PROTOCOLS.get(text.strip().lower())
    if proto is None:
        raise ValueError(f"protocol {text!r}: use tcp, udp or sctp")
    return proto


def parse_publish(text: str) -> list[pb.PortConfig]:
    """`published=8080,target=80[,protocol=udp|sctp][,mode=host]` or the
    short `[PUBLISHED:]TARGET[/PROTOCOL]`, where both may be ranges of equal
    length (`8080-8081:80-81`). Without a published port the manager assigns
    one from 30000-32767, as Swarm does. Raises ValueError naming the problem."""
    if "=" in text:
        p = pb.PortConfig()
        seen: set[str] = set()
        for part in text.split(","):
            k, sep, v = part.partition("=")
            k = k.strip().lower()
            if not sep or not v:
                raise ValueError(f"invalid field {part!r}: expected KEY=VALUE")
            if k in seen:
                raise ValueError(f"{k} given twice")
            seen.add(k)
            if k == "published":
                p.published_port = _port_number(v, "published port")
            elif k == "target":
                p.target_port = _port_number(v, "target port")
            elif k == "protocol":
                p.protocol = _protocol(v)
            elif k == "mode":
                if v.lower() not in _PUBLISH_MODES:
                    raise ValueError(f"mode {v!r}: use ingress or host")
                p.publish_mode = _PUBLISH_MODES[v.lower()]
            else:
                raise ValueError(f"unknown field {k!r}: use published, target, protocol, mode")
        if "target" not in seen:
            raise ValueError("target=PORT is required")
        return [p]
    ports, _, proto_text = text.partition("/")
    proto = _protocol(proto_text) if proto_text else pb.PortConfig.TCP
    published_text, sep, target_text = ports.rpartition(":")
    if sep and not published_text:
        raise ValueError(f"invalid port {text!r}: expected [PUBLISHED:]TARGET[/PROTOCOL]")
    if published_text.count(":"):
        raise ValueError(f"invalid port {text!r}: a host IP cannot be given (ports are published on every node's addresses)")
    targets = _port_range(target_text, "target port")
    published = _port_range(published_text, "published port") if sep else [0] * len(targets)
    if len(published) != len(targets):
        raise ValueError(f"invalid port {text!r}: the published and target ranges differ in length")
    return [pb.PortConfig(protocol=proto, target_port=t, published_port=p) for p, t in zip(published, targets, strict=True)]


def port_text(p: pb.PortConfig) -> str:
    """PUBLISHED:TARGET/PROTOCOL (mode), for messages."""
    proto = pb.PortConfig.Protocol.Name(p.protocol).lower()
    mode = " (host mode)" if p.publish_mode == pb.PortConfig.HOST else ""
    return f"{p.published_port or '?'}:{p.target_port}/{proto}{mode}"


# ---- misc command arguments --------------------------------------------------


def parse_scale(text: str) -> tuple[str, int]:
    """ "web=3" -> ("web", 3) for `service scale`."""
    name, sep, count = text.partition("=")
    if not sep or not name:
        raise ValueError(f"invalid scale {text!r}: expected SERVICE=REPLICAS (e.g. web=3)")
    try:
        n = int(count)
    except ValueError:
        raise ValueError(f"invalid replicas in {text!r}: {count!r} is not a whole number") from None
    if n < 0:
        raise ValueError(f"invalid replicas in {text!r}: must not be negative")
    return name, n


def parse_filter(text: str) -> tuple[str, str]:
    """ "desired-state=running" -> ("desired-state", "running")."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"invalid filter {text!r}: expected KEY=VALUE (e.g. desired-state=running)")
    return key.strip().lower(), value.strip()


def parse_tail(text: str) -> int:
    """--tail: "all" -> -1 (every line), else a non-negative count."""
    s = text.strip().lower()
    if s == "all":
        return -1
    try:
        n = int(s)
    except ValueError:
        raise ValueError(f"invalid --tail {text!r}: expected a number of lines or 'all'") from None
    if n < 0:
        return -1
    return n


TASK_FILTER_KEYS = ("desired-state", "id", "name", "node")
# The task states' names as `ps` prints them (output.task_state_name), in order.
_TASK_STATES = tuple(name.lower() for name in pb.TaskState.keys())


def parse_task_filters(items: Iterable[str]) -> dict[str, list[str]]:
    """`ps -f` flags -> {key: [values]}: values of one key are alternatives, different
    keys must all match (Docker's filter semantics)."""
    out: dict[str, list[str]] = {}
    for item in items:
        key, value = parse_filter(item)
        if key not in TASK_FILTER_KEYS:
            raise ValueError(f"invalid filter {key!r}: supported filters are {', '.join(TASK_FILTER_KEYS)}")
        if key == "desired-state":
            value = value.lower()
            if value not in _TASK_STATES:
                raise ValueError(f"invalid desired-state {value!r}: expected one of {', '.join(_TASK_STATES)}")
        out.setdefault(key, []).append(value)
    return out


# ---- points in time (issue 16: events and logs --since / --until) ----------------

_UNIX_TIME = re.compile(r"^\d+(\.\d+)?$")


def parse_time(text: str, now: float) -> float:
    """What `docker events --since` / `logs --since` accept, as unix seconds:
    a unix timestamp ("1700000000", "1700000000.5"), an RFC 3339 date or time
    ("2024-01-02", "2024-01-02T15:04:05Z", with an offset; no zone = local
    time), or a duration before `now` ("10m", "1h30m")."""
    s = text.strip()
    if not s:
        raise ValueError("empty time: expected a timestamp, an RFC 3339 time or a duration such as 10m")
    if _UNIX_TIME.match(s):
        return float(s)
    try:
        return now - parse_duration(s)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}: expected a unix timestamp, an RFC 3339 time (2024-01-02T15:04:05Z) or a duration such as 10m"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # local time, as docker reads a time without a zone
    return when.timestamp()
