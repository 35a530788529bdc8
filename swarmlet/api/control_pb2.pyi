from swarmlet.api import objects_pb2 as _objects_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InitRequest(_message.Message):
    __slots__ = ("advertise_addr", "listen_port", "force_new_cluster", "default_address_pool", "default_subnet_size")
    ADVERTISE_ADDR_FIELD_NUMBER: _ClassVar[int]
    LISTEN_PORT_FIELD_NUMBER: _ClassVar[int]
    FORCE_NEW_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_ADDRESS_POOL_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_SUBNET_SIZE_FIELD_NUMBER: _ClassVar[int]
    advertise_addr: str
    listen_port: str
    force_new_cluster: bool
    default_address_pool: _containers.RepeatedScalarFieldContainer[str]
    default_subnet_size: int
    def __init__(self, advertise_addr: _Optional[str] = ..., listen_port: _Optional[str] = ..., force_new_cluster: _Optional[bool] = ..., default_address_pool: _Optional[_Iterable[str]] = ..., default_subnet_size: _Optional[int] = ...) -> None: ...

class InitResponse(_message.Message):
    __slots__ = ("node_id", "cluster_id", "worker_token", "manager_token", "api_addr")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MANAGER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    API_ADDR_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    cluster_id: str
    worker_token: str
    manager_token: str
    api_addr: str
    def __init__(self, node_id: _Optional[str] = ..., cluster_id: _Optional[str] = ..., worker_token: _Optional[str] = ..., manager_token: _Optional[str] = ..., api_addr: _Optional[str] = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("token", "remote_addr", "advertise_addr")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    REMOTE_ADDR_FIELD_NUMBER: _ClassVar[int]
    ADVERTISE_ADDR_FIELD_NUMBER: _ClassVar[int]
    token: str
    remote_addr: str
    advertise_addr: str
    def __init__(self, token: _Optional[str] = ..., remote_addr: _Optional[str] = ..., advertise_addr: _Optional[str] = ...) -> None: ...

class JoinResponse(_message.Message):
    __slots__ = ("node_id", "role")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    role: str
    def __init__(self, node_id: _Optional[str] = ..., role: _Optional[str] = ...) -> None: ...

class LeaveRequest(_message.Message):
    __slots__ = ("force",)
    FORCE_FIELD_NUMBER: _ClassVar[int]
    force: bool
    def __init__(self, force: _Optional[bool] = ...) -> None: ...

class LeaveResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("state", "node_id", "role", "cluster_id", "addr", "managers", "is_leader", "nodes", "managers_count", "services", "tasks", "error", "docker_host", "raft_status", "state_digest", "store_version")
    STATE_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    MANAGERS_FIELD_NUMBER: _ClassVar[int]
    IS_LEADER_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    MANAGERS_COUNT_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DOCKER_HOST_FIELD_NUMBER: _ClassVar[int]
    RAFT_STATUS_FIELD_NUMBER: _ClassVar[int]
    STATE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    STORE_VERSION_FIELD_NUMBER: _ClassVar[int]
    state: str
    node_id: str
    role: str
    cluster_id: str
    addr: str
    managers: _containers.RepeatedScalarFieldContainer[str]
    is_leader: bool
    nodes: int
    managers_count: int
    services: int
    tasks: int
    error: str
    docker_host: str
    raft_status: str
    state_digest: str
    store_version: int
    def __init__(self, state: _Optional[str] = ..., node_id: _Optional[str] = ..., role: _Optional[str] = ..., cluster_id: _Optional[str] = ..., addr: _Optional[str] = ..., managers: _Optional[_Iterable[str]] = ..., is_leader: _Optional[bool] = ..., nodes: _Optional[int] = ..., managers_count: _Optional[int] = ..., services: _Optional[int] = ..., tasks: _Optional[int] = ..., error: _Optional[str] = ..., docker_host: _Optional[str] = ..., raft_status: _Optional[str] = ..., state_digest: _Optional[str] = ..., store_version: _Optional[int] = ...) -> None: ...

class JoinTokenRequest(_message.Message):
    __slots__ = ("role", "rotate")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ROTATE_FIELD_NUMBER: _ClassVar[int]
    role: str
    rotate: bool
    def __init__(self, role: _Optional[str] = ..., rotate: _Optional[bool] = ...) -> None: ...

class JoinTokenResponse(_message.Message):
    __slots__ = ("token", "api_addr")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    API_ADDR_FIELD_NUMBER: _ClassVar[int]
    token: str
    api_addr: str
    def __init__(self, token: _Optional[str] = ..., api_addr: _Optional[str] = ...) -> None: ...

class CreateServiceRequest(_message.Message):
    __slots__ = ("spec", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: _objects_pb2.ServiceSpec
    request_id: str
    def __init__(self, spec: _Optional[_Union[_objects_pb2.ServiceSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ServiceResponse(_message.Message):
    __slots__ = ("service",)
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    service: _objects_pb2.Service
    def __init__(self, service: _Optional[_Union[_objects_pb2.Service, _Mapping]] = ...) -> None: ...

class GetServiceRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class ListServicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServiceSummary(_message.Message):
    __slots__ = ("service", "running", "desired")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    service: _objects_pb2.Service
    running: int
    desired: int
    def __init__(self, service: _Optional[_Union[_objects_pb2.Service, _Mapping]] = ..., running: _Optional[int] = ..., desired: _Optional[int] = ...) -> None: ...

class ListServicesResponse(_message.Message):
    __slots__ = ("services",)
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[ServiceSummary]
    def __init__(self, services: _Optional[_Iterable[_Union[ServiceSummary, _Mapping]]] = ...) -> None: ...

class ScaleServiceRequest(_message.Message):
    __slots__ = ("ref", "replicas", "request_id")
    REF_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ref: str
    replicas: int
    request_id: str
    def __init__(self, ref: _Optional[str] = ..., replicas: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class UpdateServiceRequest(_message.Message):
    __slots__ = ("ref", "version", "spec", "request_id")
    REF_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ref: str
    version: int
    spec: _objects_pb2.ServiceSpec
    request_id: str
    def __init__(self, ref: _Optional[str] = ..., version: _Optional[int] = ..., spec: _Optional[_Union[_objects_pb2.ServiceSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class RollbackServiceRequest(_message.Message):
    __slots__ = ("ref", "request_id")
    REF_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ref: str
    request_id: str
    def __init__(self, ref: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class PromoteServiceRequest(_message.Message):
    __slots__ = ("ref", "request_id")
    REF_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ref: str
    request_id: str
    def __init__(self, ref: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class RemoveServiceRequest(_message.Message):
    __slots__ = ("ref", "request_id")
    REF_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ref: str
    request_id: str
    def __init__(self, ref: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class RemoveServiceResponse(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("service_ref", "node_ref")
    SERVICE_REF_FIELD_NUMBER: _ClassVar[int]
    NODE_REF_FIELD_NUMBER: _ClassVar[int]
    service_ref: str
    node_ref: str
    def __init__(self, service_ref: _Optional[str] = ..., node_ref: _Optional[str] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks", "node_names")
    class NodeNamesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NODE_NAMES_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Task]
    node_names: _containers.ScalarMap[str, str]
    def __init__(self, tasks: _Optional[_Iterable[_Union[_objects_pb2.Task, _Mapping]]] = ..., node_names: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ServiceProgressRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class SlotProgress(_message.Message):
    __slots__ = ("slot", "node_id", "node_name", "task_id", "state", "desired_state", "message", "err", "spec_version", "attempt", "current", "settled", "has_task", "live", "stuck")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DESIRED_STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ERR_FIELD_NUMBER: _ClassVar[int]
    SPEC_VERSION_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    SETTLED_FIELD_NUMBER: _ClassVar[int]
    HAS_TASK_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    STUCK_FIELD_NUMBER: _ClassVar[int]
    slot: int
    node_id: str
    node_name: str
    task_id: str
    state: _objects_pb2.TaskState
    desired_state: _objects_pb2.TaskState
    message: str
    err: str
    spec_version: int
    attempt: int
    current: bool
    settled: bool
    has_task: bool
    live: bool
    stuck: str
    def __init__(self, slot: _Optional[int] = ..., node_id: _Optional[str] = ..., node_name: _Optional[str] = ..., task_id: _Optional[str] = ..., state: _Optional[_Union[_objects_pb2.TaskState, str]] = ..., desired_state: _Optional[_Union[_objects_pb2.TaskState, str]] = ..., message: _Optional[str] = ..., err: _Optional[str] = ..., spec_version: _Optional[int] = ..., attempt: _Optional[int] = ..., current: _Optional[bool] = ..., settled: _Optional[bool] = ..., has_task: _Optional[bool] = ..., live: _Optional[bool] = ..., stuck: _Optional[str] = ...) -> None: ...

class ServiceProgressResponse(_message.Message):
    __slots__ = ("service", "desired", "running", "slots", "stuck", "converged", "update_phase")
    class UpdatePhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        NO_UPDATE: _ClassVar[ServiceProgressResponse.UpdatePhase]
        IN_PROGRESS: _ClassVar[ServiceProgressResponse.UpdatePhase]
        AWAITING_PROMOTION: _ClassVar[ServiceProgressResponse.UpdatePhase]
        PAUSED: _ClassVar[ServiceProgressResponse.UpdatePhase]
        COMPLETED: _ClassVar[ServiceProgressResponse.UpdatePhase]
        ROLLED_BACK: _ClassVar[ServiceProgressResponse.UpdatePhase]
    NO_UPDATE: ServiceProgressResponse.UpdatePhase
    IN_PROGRESS: ServiceProgressResponse.UpdatePhase
    AWAITING_PROMOTION: ServiceProgressResponse.UpdatePhase
    PAUSED: ServiceProgressResponse.UpdatePhase
    COMPLETED: ServiceProgressResponse.UpdatePhase
    ROLLED_BACK: ServiceProgressResponse.UpdatePhase
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    STUCK_FIELD_NUMBER: _ClassVar[int]
    CONVERGED_FIELD_NUMBER: _ClassVar[int]
    UPDATE_PHASE_FIELD_NUMBER: _ClassVar[int]
    service: _objects_pb2.Service
    desired: int
    running: int
    slots: _containers.RepeatedCompositeFieldContainer[SlotProgress]
    stuck: str
    converged: bool
    update_phase: ServiceProgressResponse.UpdatePhase
    def __init__(self, service: _Optional[_Union[_objects_pb2.Service, _Mapping]] = ..., desired: _Optional[int] = ..., running: _Optional[int] = ..., slots: _Optional[_Iterable[_Union[SlotProgress, _Mapping]]] = ..., stuck: _Optional[str] = ..., converged: _Optional[bool] = ..., update_phase: _Optional[_Union[ServiceProgressResponse.UpdatePhase, str]] = ...) -> None: ...

class ServiceLogsRequest(_message.Message):
    __slots__ = ("ref", "follow", "tail", "timestamps")
    REF_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    ref: str
    follow: bool
    tail: int
    timestamps: bool
    def __init__(self, ref: _Optional[str] = ..., follow: _Optional[bool] = ..., tail: _Optional[int] = ..., timestamps: _Optional[bool] = ...) -> None: ...

class ServiceLogLine(_message.Message):
    __slots__ = ("task_id", "node_id", "node_name", "slot", "stream", "data")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    node_id: str
    node_name: str
    slot: int
    stream: str
    data: bytes
    def __init__(self, task_id: _Optional[str] = ..., node_id: _Optional[str] = ..., node_name: _Optional[str] = ..., slot: _Optional[int] = ..., stream: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes", "leader_id")
    NODES_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Node]
    leader_id: str
    def __init__(self, nodes: _Optional[_Iterable[_Union[_objects_pb2.Node, _Mapping]]] = ..., leader_id: _Optional[str] = ...) -> None: ...

class GetNodeRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class NodeResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: _objects_pb2.Node
    def __init__(self, node: _Optional[_Union[_objects_pb2.Node, _Mapping]] = ...) -> None: ...

class UpdateNodeRequest(_message.Message):
    __slots__ = ("ref", "set_availability", "availability", "label_add", "label_rm", "request_id")
    class LabelAddEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REF_FIELD_NUMBER: _ClassVar[int]
    SET_AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    LABEL_ADD_FIELD_NUMBER: _ClassVar[int]
    LABEL_RM_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ref: str
    set_availability: bool
    availability: _objects_pb2.NodeSpec.Availability
    label_add: _containers.ScalarMap[str, str]
    label_rm: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    def __init__(self, ref: _Optional[str] = ..., set_availability: _Optional[bool] = ..., availability: _Optional[_Union[_objects_pb2.NodeSpec.Availability, str]] = ..., label_add: _Optional[_Mapping[str, str]] = ..., label_rm: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class RemoveNodeRequest(_message.Message):
    __slots__ = ("ref", "force", "request_id")
    REF_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ref: str
    force: bool
    request_id: str
    def __init__(self, ref: _Optional[str] = ..., force: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class RemoveNodeResponse(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CreateNetworkRequest(_message.Message):
    __slots__ = ("spec", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: _objects_pb2.NetworkSpec
    request_id: str
    def __init__(self, spec: _Optional[_Union[_objects_pb2.NetworkSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class NetworkResponse(_message.Message):
    __slots__ = ("network",)
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    network: _objects_pb2.Network
    def __init__(self, network: _Optional[_Union[_objects_pb2.Network, _Mapping]] = ...) -> None: ...

class GetNetworkRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class ListNetworksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNetworksResponse(_message.Message):
    __slots__ = ("networks",)
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    networks: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Network]
    def __init__(self, networks: _Optional[_Iterable[_Union[_objects_pb2.Network, _Mapping]]] = ...) -> None: ...

class RemoveNetworkRequest(_message.Message):
    __slots__ = ("ref", "request_id")
    REF_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ref: str
    request_id: str
    def __init__(self, ref: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class RemoveNetworkResponse(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class NetworkEndpoint(_message.Message):
    __slots__ = ("task_id", "service_name", "addr", "node_id", "node_name")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    service_name: str
    addr: str
    node_id: str
    node_name: str
    def __init__(self, task_id: _Optional[str] = ..., service_name: _Optional[str] = ..., addr: _Optional[str] = ..., node_id: _Optional[str] = ..., node_name: _Optional[str] = ...) -> None: ...

class NetworkPeer(_message.Message):
    __slots__ = ("node_id", "node_name", "addr")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    node_name: str
    addr: str
    def __init__(self, node_id: _Optional[str] = ..., node_name: _Optional[str] = ..., addr: _Optional[str] = ...) -> None: ...

class InspectNetworkResponse(_message.Message):
    __slots__ = ("network", "peers", "endpoints", "service_vips")
    class ServiceVipsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_VIPS_FIELD_NUMBER: _ClassVar[int]
    network: _objects_pb2.Network
    peers: _containers.RepeatedCompositeFieldContainer[NetworkPeer]
    endpoints: _containers.RepeatedCompositeFieldContainer[NetworkEndpoint]
    service_vips: _containers.ScalarMap[str, str]
    def __init__(self, network: _Optional[_Union[_objects_pb2.Network, _Mapping]] = ..., peers: _Optional[_Iterable[_Union[NetworkPeer, _Mapping]]] = ..., endpoints: _Optional[_Iterable[_Union[NetworkEndpoint, _Mapping]]] = ..., service_vips: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ChangeRoleRequest(_message.Message):
    __slots__ = ("ref", "role", "force")
    REF_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    ref: str
    role: _objects_pb2.NodeSpec.Role
    force: bool
    def __init__(self, ref: _Optional[str] = ..., role: _Optional[_Union[_objects_pb2.NodeSpec.Role, str]] = ..., force: _Optional[bool] = ...) -> None: ...

class BackupRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BackupResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class RestoreRequest(_message.Message):
    __slots__ = ("data", "advertise_addr")
    DATA_FIELD_NUMBER: _ClassVar[int]
    ADVERTISE_ADDR_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    advertise_addr: str
    def __init__(self, data: _Optional[bytes] = ..., advertise_addr: _Optional[str] = ...) -> None: ...

class BackupTables(_message.Message):
    __slots__ = ("store_version", "clusters", "nodes", "services", "tasks", "networks")
    STORE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    store_version: int
    clusters: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Cluster]
    nodes: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Node]
    services: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Service]
    tasks: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Task]
    networks: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Network]
    def __init__(self, store_version: _Optional[int] = ..., clusters: _Optional[_Iterable[_Union[_objects_pb2.Cluster, _Mapping]]] = ..., nodes: _Optional[_Iterable[_Union[_objects_pb2.Node, _Mapping]]] = ..., services: _Optional[_Iterable[_Union[_objects_pb2.Service, _Mapping]]] = ..., tasks: _Optional[_Iterable[_Union[_objects_pb2.Task, _Mapping]]] = ..., networks: _Optional[_Iterable[_Union[_objects_pb2.Network, _Mapping]]] = ...) -> None: ...
