"""`--publish` parsing: the long form (published=,target=,protocol=,mode=)
and the short PUBLISHED:TARGET[/PROTO]."""

from __future__ import annotations

import pytest

from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.parse import parse_publish


@pytest.mark.parametrize(
    "text,want",
    [
        ("published=8080,target=80", (8080, 80, pb.PortConfig.TCP, pb.PortConfig.INGRESS)),
        ("published=53,target=5353,protocol=udp,mode=host", (53, 5353, pb.PortConfig.UDP, pb.PortConfig.HOST)),
        ("8080:80", (8080, 80, pb.PortConfig.TCP, pb.PortConfig.INGRESS)),
        ("53:53/udp", (53, 53, pb.PortConfig.UDP, pb.PortConfig.INGRESS)),
        ("published=80,target=80,protocol=sctp", (80, 80, pb.PortConfig.SCTP, pb.PortConfig.INGRESS)),
        ("9000:9000/sctp", (9000, 9000, pb.PortConfig.SCTP, pb.PortConfig.INGRESS)),
        # No published port: the manager assigns one (0 here).
        ("80", (0, 80, pb.PortConfig.TCP, pb.PortConfig.INGRESS)),
        ("target=80", (0, 80, pb.PortConfig.TCP, pb.PortConfig.INGRESS)),
        ("target=80,mode=host", (0, 80, pb.PortConfig.TCP, pb.PortConfig.HOST)),
    ],
)
def test_parse_publish(text: str, want: tuple[int, int, int, int]) -> None:
    (p,) = parse_publish(text)
    assert (p.published_port, p.target_port, p.protocol, p.publish_mode) == want


def test_parse_publish_ranges() -> None:
    got = [(p.published_port, p.target_port, p.protocol) for p in parse_publish("8080-8082:80-82/udp")]
    assert got == [(8080, 80, pb.PortConfig.UDP), (8081, 81, pb.PortConfig.UDP), (8082, 82, pb.PortConfig.UDP)]
    assert [(p.published_port, p.target_port) for p in parse_publish("80-81")] == [(0, 80), (0, 81)]


@pytest.mark.parametrize(
    "text,msg",
    [
        ("published=8080", "target=PORT is required"),
        ("published=70000,target=80", "out of range"),
        ("published=80,target=80,protocol=icmp", "use tcp, udp or sctp"),
        ("published=80,target=80,mode=global", "use ingress or host"),
        (":80", r"expected \[PUBLISHED:\]TARGET"),
        ("8080-8081:80", "ranges differ in length"),
        ("82-80", "end is below the start"),
        ("10.0.0.1:8080:80", "a host IP cannot be given"),
        ("published=80,target=80,color=red", "unknown field"),
    ],
)
def test_parse_publish_errors(text: str, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        parse_publish(text)
