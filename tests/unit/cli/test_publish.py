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
    ],
)
def test_parse_publish(text: str, want: tuple[int, int, int, int]) -> None:
    p = parse_publish(text)
    assert (p.published_port, p.target_port, p.protocol, p.publish_mode) == want


@pytest.mark.parametrize(
    "text,msg",
    [
        ("published=8080", "target=PORT is required"),
        ("target=80", "published=PORT is required"),
        ("published=70000,target=80", "out of range"),
        ("published=80,target=80,protocol=sctp", "use tcp or udp"),
        ("published=80,target=80,mode=global", "use ingress or host"),
        ("8080", "expected PUBLISHED:TARGET"),
        ("published=80,target=80,color=red", "unknown field"),
    ],
)
def test_parse_publish_errors(text: str, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        parse_publish(text)
