from swarmlet.api import objects_pb2 as _objects_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SessionRequest(_message.Message):
    __slots__ = ("description", "addr", "api_addr", "raft_addr")
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    API_ADDR_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    description: _objects_pb2.NodeDescription
    addr: str
    api_addr: str
    raft_addr: str
    def __init__(self, description: _Optional[_Union[_objects_pb2.NodeDescription, _Mapping]] = ..., addr: _Optional[str] = ..., api_addr: _Optional[str] = ..., raft_addr: _Optional[str] = ...) -> None: ...

class SessionMessage(_message.Message):
    __slots__ = ("session_id", "heartbeat_period", "tasks", "managers", "node_id", "availability", "desired_role", "networks", "images", "registry_auths", "secrets", "configs", "trust_pem", "signing_key_id", "cert_expiry", "revoked_certs", "manager_ids", "cluster_id", "incremental", "removed_tasks", "networks_changed", "more", "extras_changed")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_PERIOD_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    MANAGERS_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    DESIRED_ROLE_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_AUTHS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    CONFIGS_FIELD_NUMBER: _ClassVar[int]
    TRUST_PEM_FIELD_NUMBER: _ClassVar[int]
    SIGNING_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    CERT_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    REVOKED_CERTS_FIELD_NUMBER: _ClassVar[int]
    MANAGER_IDS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    INCREMENTAL_FIELD_NUMBER: _ClassVar[int]
    REMOVED_TASKS_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_CHANGED_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    EXTRAS_CHANGED_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    heartbeat_period: float
    tasks: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Task]
    managers: _containers.RepeatedScalarFieldContainer[str]
    node_id: str
    availability: _objects_pb2.NodeSpec.Availability
    desired_role: _objects_pb2.NodeSpec.Role
    networks: _containers.RepeatedCompositeFieldContainer[NetworkAssignment]
    images: _containers.RepeatedCompositeFieldContainer[ImageSource]
    registry_auths: _containers.RepeatedCompositeFieldContainer[ServiceRegistryAuth]
    secrets: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Secret]
    configs: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Config]
    trust_pem: bytes
    signing_key_id: str
    cert_expiry: float
    revoked_certs: _containers.RepeatedScalarFieldContainer[str]
    manager_ids: _containers.RepeatedScalarFieldContainer[str]
    cluster_id: str
    incremental: bool
    removed_tasks: _containers.RepeatedScalarFieldContainer[str]
    networks_changed: bool
    more: bool
    extras_changed: bool
    def __init__(self, session_id: _Optional[str] = ..., heartbeat_period: _Optional[float] = ..., tasks: _Optional[_Iterable[_Union[_objects_pb2.Task, _Mapping]]] = ..., managers: _Optional[_Iterable[str]] = ..., node_id: _Optional[str] = ..., availability: _Optional[_Union[_objects_pb2.NodeSpec.Availability, str]] = ..., desired_role: _Optional[_Union[_objects_pb2.NodeSpec.Role, str]] = ..., networks: _Optional[_Iterable[_Union[NetworkAssignment, _Mapping]]] = ..., images: _Optional[_Iterable[_Union[ImageSource, _Mapping]]] = ..., registry_auths: _Optional[_Iterable[_Union[ServiceRegistryAuth, _Mapping]]] = ..., secrets: _Optional[_Iterable[_Union[_objects_pb2.Secret, _Mapping]]] = ..., configs: _Optional[_Iterable[_Union[_objects_pb2.Config, _Mapping]]] = ..., trust_pem: _Optional[bytes] = ..., signing_key_id: _Optional[str] = ..., cert_expiry: _Optional[float] = ..., revoked_certs: _Optional[_Iterable[str]] = ..., manager_ids: _Optional[_Iterable[str]] = ..., cluster_id: _Optional[str] = ..., incremental: _Optional[bool] = ..., removed_tasks: _Optional[_Iterable[str]] = ..., networks_changed: _Optional[bool] = ..., more: _Optional[bool] = ..., extras_changed: _Optional[bool] = ...) -> None: ...

class ImageSource(_message.Message):
    __slots__ = ("ref", "image_id", "peers")
    REF_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    ref: str
    image_id: str
    peers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ref: _Optional[str] = ..., image_id: _Optional[str] = ..., peers: _Optional[_Iterable[str]] = ...) -> None: ...

class ServiceRegistryAuth(_message.Message):
    __slots__ = ("service_id", "auth")
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    auth: _objects_pb2.RegistryAuth
    def __init__(self, service_id: _Optional[str] = ..., auth: _Optional[_Union[_objects_pb2.RegistryAuth, _Mapping]] = ...) -> None: ...

class Endpoint(_message.Message):
    __slots__ = ("task_id", "addr", "node_addr")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    NODE_ADDR_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    addr: str
    node_addr: str
    def __init__(self, task_id: _Optional[str] = ..., addr: _Optional[str] = ..., node_addr: _Optional[str] = ...) -> None: ...

class ServiceEndpoints(_message.Message):
    __slots__ = ("service_id", "name", "mode", "vip", "backends", "ports", "aliases")
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    VIP_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    name: str
    mode: _objects_pb2.EndpointSpec.Mode
    vip: str
    backends: _containers.RepeatedCompositeFieldContainer[Endpoint]
    ports: _containers.RepeatedCompositeFieldContainer[_objects_pb2.PortConfig]
    aliases: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, service_id: _Optional[str] = ..., name: _Optional[str] = ..., mode: _Optional[_Union[_objects_pb2.EndpointSpec.Mode, str]] = ..., vip: _Optional[str] = ..., backends: _Optional[_Iterable[_Union[Endpoint, _Mapping]]] = ..., ports: _Optional[_Iterable[_Union[_objects_pb2.PortConfig, _Mapping]]] = ..., aliases: _Optional[_Iterable[str]] = ...) -> None: ...

class NetworkAssignment(_message.Message):
    __slots__ = ("network", "peers", "remote", "services", "node_addr")
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    REMOTE_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    NODE_ADDR_FIELD_NUMBER: _ClassVar[int]
    network: _objects_pb2.Network
    peers: _containers.RepeatedScalarFieldContainer[str]
    remote: _containers.RepeatedCompositeFieldContainer[Endpoint]
    services: _containers.RepeatedCompositeFieldContainer[ServiceEndpoints]
    node_addr: str
    def __init__(self, network: _Optional[_Union[_objects_pb2.Network, _Mapping]] = ..., peers: _Optional[_Iterable[str]] = ..., remote: _Optional[_Iterable[_Union[Endpoint, _Mapping]]] = ..., services: _Optional[_Iterable[_Union[ServiceEndpoints, _Mapping]]] = ..., node_addr: _Optional[str] = ...) -> None: ...

class RenewRoleRequest(_message.Message):
    __slots__ = ("csr_pem",)
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    csr_pem: bytes
    def __init__(self, csr_pem: _Optional[bytes] = ...) -> None: ...

class RenewRoleResponse(_message.Message):
    __slots__ = ("cert_pem", "role", "raft_secret", "raft_peers")
    CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    RAFT_SECRET_FIELD_NUMBER: _ClassVar[int]
    RAFT_PEERS_FIELD_NUMBER: _ClassVar[int]
    cert_pem: bytes
    role: str
    raft_secret: bytes
    raft_peers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cert_pem: _Optional[bytes] = ..., role: _Optional[str] = ..., raft_secret: _Optional[bytes] = ..., raft_peers: _Optional[_Iterable[str]] = ...) -> None: ...

class RaftSecretRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RaftSecretResponse(_message.Message):
    __slots__ = ("epoch", "current", "previous")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    current: bytes
    previous: bytes
    def __init__(self, epoch: _Optional[int] = ..., current: _Optional[bytes] = ..., previous: _Optional[bytes] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("session_id", "description")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    description: _objects_pb2.NodeDescription
    def __init__(self, session_id: _Optional[str] = ..., description: _Optional[_Union[_objects_pb2.NodeDescription, _Mapping]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("period",)
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    period: float
    def __init__(self, period: _Optional[float] = ...) -> None: ...

class TaskStatusReport(_message.Message):
    __slots__ = ("task_id", "status")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    status: _objects_pb2.TaskStatus
    def __init__(self, task_id: _Optional[str] = ..., status: _Optional[_Union[_objects_pb2.TaskStatus, _Mapping]] = ...) -> None: ...

class UpdateTaskStatusRequest(_message.Message):
    __slots__ = ("session_id", "updates")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    updates: _containers.RepeatedCompositeFieldContainer[TaskStatusReport]
    def __init__(self, session_id: _Optional[str] = ..., updates: _Optional[_Iterable[_Union[TaskStatusReport, _Mapping]]] = ...) -> None: ...

class UpdateTaskStatusResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RenewCertificateRequest(_message.Message):
    __slots__ = ("csr_pem",)
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    csr_pem: bytes
    def __init__(self, csr_pem: _Optional[bytes] = ...) -> None: ...

class RenewCertificateResponse(_message.Message):
    __slots__ = ("cert_pem", "trust_pem")
    CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    TRUST_PEM_FIELD_NUMBER: _ClassVar[int]
    cert_pem: bytes
    trust_pem: bytes
    def __init__(self, cert_pem: _Optional[bytes] = ..., trust_pem: _Optional[bytes] = ...) -> None: ...
