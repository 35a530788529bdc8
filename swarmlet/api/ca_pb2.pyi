from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class IssueNodeCertificateRequest(_message.Message):
    __slots__ = ("token", "csr_pem", "hostname", "addr", "api_addr", "raft_addr")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    API_ADDR_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    token: str
    csr_pem: bytes
    hostname: str
    addr: str
    api_addr: str
    raft_addr: str
    def __init__(self, token: _Optional[str] = ..., csr_pem: _Optional[bytes] = ..., hostname: _Optional[str] = ..., addr: _Optional[str] = ..., api_addr: _Optional[str] = ..., raft_addr: _Optional[str] = ...) -> None: ...

class IssueNodeCertificateResponse(_message.Message):
    __slots__ = ("node_id", "cert_pem", "ca_cert_pem", "role", "managers", "raft_secret", "raft_peers")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    MANAGERS_FIELD_NUMBER: _ClassVar[int]
    RAFT_SECRET_FIELD_NUMBER: _ClassVar[int]
    RAFT_PEERS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    cert_pem: bytes
    ca_cert_pem: bytes
    role: str
    managers: _containers.RepeatedScalarFieldContainer[str]
    raft_secret: bytes
    raft_peers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, node_id: _Optional[str] = ..., cert_pem: _Optional[bytes] = ..., ca_cert_pem: _Optional[bytes] = ..., role: _Optional[str] = ..., managers: _Optional[_Iterable[str]] = ..., raft_secret: _Optional[bytes] = ..., raft_peers: _Optional[_Iterable[str]] = ...) -> None: ...
