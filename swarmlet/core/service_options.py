"""Checks on the container options, jobs and placement options of a service
spec (issue 11), and the names they accept. Called by validation.py; each
check raises InvalidSpec naming the flag and the value at fault, so a bad
spec is refused before anything is written.

The CLI uses the same tables (capability names, ulimit names) to normalise
what a user typed, so both sides agree on one spelling."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import constraints as cons
from swarmlet.core import generic as gen
from swarmlet.core import tasks as tk
from swarmlet.core import templates as tpl


class OptionError(errors.Invalid):
    """A container, job or placement option that cannot work."""


# Linux capabilities (capabilities(7)), without the CAP_ prefix.
CAPABILITIES = frozenset(
    """CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE
    NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT
    SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE
    AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ
    PERFMON BPF CHECKPOINT_RESTORE""".split()
)

# setrlimit(2) resources as docker names them.
ULIMITS = frozenset("core cpu data fsize locks memlock msgqueue nice nofile nproc rss rtprio rttime sigpending stack".split())

# Sysctls a container may set: those of its own IPC and network namespaces
# (the others are the host's: the runtime refuses them).
_SYSCTL_IPC = frozenset(
    "kernel.msgmax kernel.msgmnb kernel.msgmni kernel.sem kernel.shmall kernel.shmmax kernel.shmmni kernel.shm_rmid_forced".split()
)
_SYSCTL_PREFIXES = ("fs.mqueue.", "net.")
_SYSCTL_KEY = re.compile(r"^[a-z0-9_]+(\.[a-zA-Z0-9_+-]+)+$")

_SIGNALS = frozenset(
    """HUP INT QUIT ILL TRAP ABRT IOT BUS FPE KILL USR1 SEGV USR2 PIPE ALRM TERM STKFLT CHLD CONT STOP TSTP
    TTIN TTOU URG XCPU XFSZ VTALRM PROF WINCH IO POLL PWR SYS""".split()
)
_RT_SIGNAL = re.compile(r"^RTM(IN|AX)([+-](\d+))?$")

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_NAME_TOKEN = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.@+-]*$")
_LOG_DRIVER = re.compile(r"^[a-z0-9][a-z0-9_.:/-]*$")


# ---- names, shared with the CLI ----


def capability(name: str) -> str:
    """`net_admin`, `NET_ADMIN` or `CAP_NET_ADMIN` -> "CAP_NET_ADMIN"; "ALL"
    stays. Raises OptionError for a name Linux does not have."""
    n = name.strip().upper()
    if n == "ALL":
        return n
    bare = n[4:] if n.startswith("CAP_") else n
    if bare not in CAPABILITIES:
        raise OptionError(f"unknown capability {name!r}: expected a Linux capability such as CAP_NET_ADMIN, or ALL")
    return "CAP_" + bare


def signal_name(text: str) -> str:
    """`TERM`, `SIGTERM`, `sigterm`, `15` or `SIGRTMIN+3` -> the canonical
    form docker takes ("SIGTERM", "15", "SIGRTMIN+3"). Raises OptionError."""
    t = text.strip().upper()
    if t.isdigit():
        if not 1 <= int(t) <= 64:
            raise OptionError(f"invalid stop signal {text!r}: signal numbers are 1-64")
        return str(int(t))
    bare = t[3:] if t.startswith("SIG") else t
    m = _RT_SIGNAL.match(bare)
    if bare in _SIGNALS or (m is not None and int(m.group(3) or 0) <= 30):
        return "SIG" + bare
    raise OptionError(f"invalid stop signal {text!r}: expected a signal name such as SIGTERM or SIGQUIT, or its number")


def parse_ulimit(text: str) -> pb.Ulimit:
    """`nofile=1024` or `nofile=1024:2048` (soft:hard; -1 = unlimited)."""
    name, sep, value = text.strip().partition("=")
    if not sep or not value:
        raise OptionError(f"invalid ulimit {text!r}: expected NAME=SOFT[:HARD], e.g. nofile=1024:2048")
    soft_s, _, hard_s = value.partition(":")
    try:
        soft = int(soft_s)
        hard = int(hard_s) if hard_s else soft
    except ValueError:
        raise OptionError(f"invalid ulimit {text!r}: the limits must be whole numbers (-1 = unlimited)") from None
    u = pb.Ulimit(name=name.strip(), soft=soft, hard=hard)
    check_ulimit(u)
    return u


def check_ulimit(u: pb.Ulimit) -> None:
    if u.name not in ULIMITS:
        raise OptionError(f"invalid ulimit {u.name!r}: expected one of {', '.join(sorted(ULIMITS))}")
    for v in (u.soft, u.hard):
        if v < -1:
            raise OptionError(f"invalid ulimit {u.name}: {v} is negative (-1 means unlimited)")
    if u.hard != -1 and (u.soft == -1 or u.soft > u.hard):
        raise OptionError(f"invalid ulimit {u.name}: the soft limit {u.soft} is above the hard limit {u.hard}")


def check_sysctl(key: str, value: str) -> None:
    if not _SYSCTL_KEY.match(key):
        raise OptionError(f"invalid sysctl {key!r}: expected a dotted name such as net.ipv4.ip_forward")
    if not value.strip():
        raise OptionError(f"invalid sysctl {key}: empty value")
    if key not in _SYSCTL_IPC and not key.startswith(_SYSCTL_PREFIXES):
        raise OptionError(
            f"sysctl {key} is not namespaced: a container may only set net.*, fs.mqueue.* and the IPC ones "
            "(kernel.msg*, kernel.sem, kernel.shm*)"
        )


def host_entry(host: str, ip: str) -> str:
    """`--host name:ip` -> the /etc/hosts line "ip name" (checked)."""
    line = f"{ip.strip()} {host.strip()}"
    check_host_line(line)
    return line


def check_host_line(line: str) -> None:
    parts = line.split()
    if len(parts) < 2:
        raise OptionError(f"invalid host entry {line!r}: expected an IP address and a host name")
    try:
        ipaddress.ip_address(parts[0])
    except ValueError:
        raise OptionError(f"invalid host entry {line!r}: {parts[0]!r} is not an IP address") from None
    for name in parts[1:]:
        if not _HOSTNAME.match(name):
            raise OptionError(f"invalid host entry {line!r}: {name!r} is not a host name")


# ---- the checks ----


def _template(text: str, flag: str) -> None:
    try:
        tpl.check(text)
    except tpl.TemplateError as e:
        raise OptionError(f"{flag}: {e}") from None


def _plain(values: Iterable[str], flag: str, what: str) -> None:
    for v in values:
        if not v or not _NAME_TOKEN.match(v):
            raise OptionError(f"{flag}: invalid {what} {v!r}")


def check_container(c: pb.ContainerSpec) -> None:
    """Every container option of the spec (issue 11) and the templates in
    --env and --hostname."""
    for e in c.env:
        _template(e, "--env")
    if c.hostname:
        _template(c.hostname, "--hostname")
        if "{{" not in c.hostname and not _HOSTNAME.match(c.hostname):
            raise OptionError(f"--hostname: {c.hostname!r} is not a valid host name")
    if c.user:
        name, _, group = c.user.partition(":")
        _plain([name] + ([group] if ":" in c.user else []), "--user", "user or group")
    if c.dir and not c.dir.startswith("/"):
        raise OptionError(f"--workdir: {c.dir!r} is not an absolute path")
    for flag, caps in (("--cap-add", c.cap_add), ("--cap-drop", c.cap_drop)):
        for cap in caps:
            if capability(cap) != cap:
                raise OptionError(f"{flag}: capability {cap!r} is not in its canonical form ({capability(cap)})")
    both = set(c.cap_add) & set(c.cap_drop)
    if both:
        raise OptionError(f"capabilities both added and dropped: {', '.join(sorted(both))}")
    for key, value in c.sysctls.items():
        check_sysctl(key, value)
    names: set[str] = set()
    for u in c.ulimits:
        check_ulimit(u)
        if u.name in names:
            raise OptionError(f"--ulimit {u.name} given twice")
        names.add(u.name)
    if c.stop_signal:
        signal_name(c.stop_signal)
    _plain(c.groups, "--group", "group")
    for ns in c.dns_config.nameservers:
        try:
            ipaddress.ip_address(ns)
        except ValueError:
            raise OptionError(f"--dns: {ns!r} is not an IP address") from None
    for dom in c.dns_config.search:
        if dom != "." and not _HOSTNAME.match(dom.rstrip(".")):
            raise OptionError(f"--dns-search: {dom!r} is not a domain name")
    for opt in c.dns_config.options:
        if not opt or any(ch.isspace() for ch in opt):
            raise OptionError(f"--dns-option: invalid option {opt!r}")
    for line in c.hosts:
        check_host_line(line)
    h = c.healthcheck
    if h.start_interval < 0:
        raise OptionError("--health-start-interval cannot be negative")


def check_task(task: pb.TaskSpec, mode: tk.ServiceMode) -> None:
    """Container options, log driver, pids limit, generic resources and
    placement options of a task spec."""
    check_container(task.container)
    ld = task.log_driver
    if ld.options and not ld.name:
        raise OptionError("--log-opt needs --log-driver")
    if ld.name and not _LOG_DRIVER.match(ld.name):
        raise OptionError(f"--log-driver: invalid driver name {ld.name!r}")
    for k in ld.options:
        if not k.strip():
            raise OptionError("--log-opt: empty option name")
    r = task.resources
    if r.limits.pids < 0:
        raise OptionError("--limit-pids cannot be negative")
    if r.reservations.pids:
        raise OptionError("pids can only be limited (--limit-pids), not reserved")
    if r.limits.generic:
        raise OptionError("generic resources can only be reserved (--generic-resource), not limited")
    try:
        gen.check_request(r.reservations.generic)
    except gen.GenericResourceError as e:
        raise OptionError(f"--generic-resource: {e}") from None
    try:
        cons.parse_preferences(task)
    except cons.ConstraintError as e:
        raise OptionError(f"--placement-pref: {e}") from None
    if task.placement.max_replicas and mode not in ("replicated", "replicated-job"):
        raise OptionError("--replicas-max-per-node is for replicated services and replicated jobs")


def check_job(spec: pb.ServiceSpec) -> None:
    """A job runs to completion: a restart condition of any would run it
    forever, and it is never rolled (no update or rollback policy)."""
    mode = tk.spec_mode(spec)
    if mode not in ("replicated-job", "global-job"):
        return
    if spec.task.restart.condition == pb.RestartPolicy.ANY:
        raise OptionError(
            f"a {mode} cannot use --restart-condition any: a task that completes would run again forever; "
            "use on-failure (the default for jobs) or none"
        )
    if spec.HasField("update") or spec.HasField("rollback"):
        raise OptionError("jobs have no update or rollback policy (--update-*, --rollback-*): every update runs the job again")


def normalise_job(spec: pb.ServiceSpec) -> None:
    """Docker's defaults for a replicated job sent without them: at most one
    task at a time."""
    if tk.spec_mode(spec) == "replicated-job" and not spec.replicated_job.max_concurrent:
        spec.replicated_job.max_concurrent = 1
