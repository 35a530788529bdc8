"""The CLI's pure parsers: sizes, CPUs, durations, K=V, addresses. (Constraints
are parsed by core.constraints: see test_service_spec.py.)"""

from __future__ import annotations

import pytest

from swarmlet.cli import parse


@pytest.mark.parametrize(
    "text,expected",
    [
        ("64M", 64 * 1024**2),
        ("64m", 64 * 1024**2),
        ("64MB", 64 * 1024**2),
        ("64MiB", 64 * 1024**2),
        ("1.5G", 3 * 1024**3 // 2),
        ("512k", 512 * 1024),
        ("100", 100),
        ("100b", 100),
        ("2T", 2 * 1024**4),
        (" 1g ", 1024**3),
        (".5k", 512),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "M", "-1M", "12Q", "1.2.3M", "64 M B", "1e3"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse.parse_size(text)


@pytest.mark.parametrize(
    "text,expected",
    [("0.5", 500_000_000), ("2", 2_000_000_000), ("0.000000001", 1), ("1.25", 1_250_000_000), ("0", 0)],
)
def test_parse_cpus(text: str, expected: int) -> None:
    assert parse.parse_cpus(text) == expected


@pytest.mark.parametrize("text", ["-1", "abc", "", "0.0000000001", "nan", "inf"])
def test_parse_cpus_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="CPU"):
        parse.parse_cpus(text)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("2h", 7200.0),
        ("1h2m3s", 3723.0),
        ("1.5s", 1.5),
        ("0", 0.0),
        ("0s", 0.0),
        ("250us", 0.00025),
        ("100ns", 1e-7),
        ("+5s", 5.0),
    ],
)
def test_parse_duration(text: str, expected: float) -> None:
    assert parse.parse_duration(text) == pytest.approx(expected)


def test_parse_duration_missing_unit_is_explained() -> None:
    with pytest.raises(ValueError, match="missing unit"):
        parse.parse_duration("10")


@pytest.mark.parametrize("text", ["", "s", "10x", "-5s", "1m 30s", "5sec", "ms"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse.parse_duration(text)


def test_parse_kv() -> None:
    assert parse.parse_kv("a=b") == ("a", "b")
    assert parse.parse_kv("a=b=c") == ("a", "b=c")
    assert parse.parse_kv("a=") == ("a", "")
    assert parse.parse_kv("a") == ("a", "")
    with pytest.raises(ValueError):
        parse.parse_kv("=b")
    with pytest.raises(ValueError):
        parse.parse_kv(" a=b")


def test_parse_kv_list_last_wins() -> None:
    assert parse.parse_kv_list(["a=1", "b=2", "a=3"]) == {"a": "3", "b": "2"}


def test_parse_env_reads_bare_names_from_environment() -> None:
    env = {"HOME": "/root"}
    assert parse.parse_env(["A=1", "HOME", "MISSING", "B="], env) == ["A=1", "HOME=/root", "B="]
    with pytest.raises(ValueError):
        parse.parse_env(["=x"], env)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("10.0.0.1:4242", "10.0.0.1:4242"),
        ("manager-1:4242", "manager-1:4242"),
        ("mgr.example.com:1", "mgr.example.com:1"),
        ("[fd00::1]:4242", "[fd00::1]:4242"),
        ("10.0.0.1", "10.0.0.1:4242"),  # default port when given
    ],
)
def test_parse_host_port(text: str, expected: str) -> None:
    assert parse.parse_host_port(text, default_port=4242) == expected


@pytest.mark.parametrize(
    "text,match",
    [
        ("10.0.0.1:0", "invalid port"),
        ("10.0.0.1:99999", "invalid port"),
        ("10.0.0.1:http", "invalid port"),
        ("tcp://10.0.0.1:4242", "without a scheme"),
        ("fd00::1", "IPv6"),
        ("[fd00::1", "unterminated"),
        ("bad_host:4242", "not a valid host"),
        ("", "missing address"),
    ],
)
def test_parse_host_port_rejects(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse.parse_host_port(text, default_port=4242)


def test_parse_host_port_requires_port_without_default() -> None:
    with pytest.raises(ValueError, match="missing port"):
        parse.parse_host_port("10.0.0.1")


def test_parse_ip() -> None:
    assert parse.parse_ip("10.0.0.1") == "10.0.0.1"
    assert parse.parse_ip("FD00::1") == "fd00::1"
    with pytest.raises(ValueError):
        parse.parse_ip("10.0.0.256")


def test_parse_scale() -> None:
    assert parse.parse_scale("web=3") == ("web", 3)
    assert parse.parse_scale("web=0") == ("web", 0)
    for bad in ("web", "=3", "web=x", "web=-1"):
        with pytest.raises(ValueError):
            parse.parse_scale(bad)


def test_parse_tail() -> None:
    assert parse.parse_tail("all") == -1
    assert parse.parse_tail("10") == 10
    assert parse.parse_tail("0") == 0
    with pytest.raises(ValueError):
        parse.parse_tail("many")


def test_parse_task_filters() -> None:
    got = parse.parse_task_filters(["desired-state=Running", "node=n1", "node=n2"])
    assert got == {"desired-state": ["running"], "node": ["n1", "n2"]}
    with pytest.raises(ValueError, match="supported filters"):
        parse.parse_task_filters(["colour=red"])
    with pytest.raises(ValueError, match="desired-state"):
        parse.parse_task_filters(["desired-state=sleeping"])
    with pytest.raises(ValueError):
        parse.parse_task_filters(["novalue"])
