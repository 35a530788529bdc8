from swarmlet.api import events_pb2 as _events_pb2
from swarmlet.api import objects_pb2 as _objects_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InitRequest(_message.Message):
    __slots__ = ("advertise_addr", "listen_port", "force_new_cluster", "default_address_pool", "default_subnet_size", "autolock", "dispatcher_heartbeat")
    ADVERTISE_ADDR_FIELD_NUMBER: _ClassVar[int]
    LISTEN_PORT_FIELD_NUMBER: _ClassVar[int]
    FORCE_NEW_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_ADDRESS_POOL_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_SUBNET_SIZE_FIELD_NUMBER: _ClassVar[int]
    AUTOLOCK_FIELD_NUMBER: _ClassVar[int]
    DISPATCHER_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    advertise_addr: str
    listen_port: str
    force_new_cluster: bool
    default_address_pool: _containers.RepeatedScalarFieldContainer[str]
    default_subnet_size: int
    autolock: bool
    dispatcher_heartbeat: float
    def __init__(self, advertise_addr: _Optional[str] = ..., listen_port: _Optional[str] = ..., force_new_cluster: _Optional[bool] = ..., default_address_pool: _Optional[_Iterable[str]] = ..., default_subnet_size: _Optional[int] = ..., autolock: _Optional[bool] = ..., dispatcher_heartbeat: _Optional[float] = ...) -> None: ...

class InitResponse(_message.Message):
    __slots__ = ("node_id", "cluster_id", "worker_token", "manager_token", "api_addr", "unlock_key")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MANAGER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    API_ADDR_FIELD_NUMBER: _ClassVar[int]
    UNLOCK_KEY_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    cluster_id: str
    worker_token: str
    manager_token: str
    api_addr: str
    unlock_key: str
    def __init__(self, node_id: _Optional[str] = ..., cluster_id: _Optional[str] = ..., worker_token: _Optional[str] = ..., manager_token: _Optional[str] = ..., api_addr: _Optional[str] = ..., unlock_key: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("state", "node_id", "role", "cluster_id", "addr", "managers", "is_leader", "nodes", "managers_count", "services", "tasks", "error", "docker_host", "raft_status", "state_digest", "store_version", "cert_not_after", "cert_warning")
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
    CERT_NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    CERT_WARNING_FIELD_NUMBER: _ClassVar[int]
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
    cert_not_after: float
    cert_warning: str
    def __init__(self, state: _Optional[str] = ..., node_id: _Optional[str] = ..., role: _Optional[str] = ..., cluster_id: _Optional[str] = ..., addr: _Optional[str] = ..., managers: _Optional[_Iterable[str]] = ..., is_leader: _Optional[bool] = ..., nodes: _Optional[int] = ..., managers_count: _Optional[int] = ..., services: _Optional[int] = ..., tasks: _Optional[int] = ..., error: _Optional[str] = ..., docker_host: _Optional[str] = ..., raft_status: _Optional[str] = ..., state_digest: _Optional[str] = ..., store_version: _Optional[int] = ..., cert_not_after: _Optional[float] = ..., cert_warning: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("spec", "registry_auth", "no_resolve_image", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_AUTH_FIELD_NUMBER: _ClassVar[int]
    NO_RESOLVE_IMAGE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: _objects_pb2.ServiceSpec
    registry_auth: _objects_pb2.RegistryAuth
    no_resolve_image: bool
    request_id: str
    def __init__(self, spec: _Optional[_Union[_objects_pb2.ServiceSpec, _Mapping]] = ..., registry_auth: _Optional[_Union[_objects_pb2.RegistryAuth, _Mapping]] = ..., no_resolve_image: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class ServiceResponse(_message.Message):
    __slots__ = ("service", "warnings")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    service: _objects_pb2.Service
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, service: _Optional[_Union[_objects_pb2.Service, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class GetServiceRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class ListServicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServiceSummary(_message.Message):
    __slots__ = ("service", "running", "desired", "completed", "total")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    service: _objects_pb2.Service
    running: int
    desired: int
    completed: int
    total: int
    def __init__(self, service: _Optional[_Union[_objects_pb2.Service, _Mapping]] = ..., running: _Optional[int] = ..., desired: _Optional[int] = ..., completed: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("ref", "version", "spec", "registry_auth", "no_resolve_image", "has_registry_auth", "request_id")
    REF_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_AUTH_FIELD_NUMBER: _ClassVar[int]
    NO_RESOLVE_IMAGE_FIELD_NUMBER: _ClassVar[int]
    HAS_REGISTRY_AUTH_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ref: str
    version: int
    spec: _objects_pb2.ServiceSpec
    registry_auth: _objects_pb2.RegistryAuth
    no_resolve_image: bool
    has_registry_auth: bool
    request_id: str
    def __init__(self, ref: _Optional[str] = ..., version: _Optional[int] = ..., spec: _Optional[_Union[_objects_pb2.ServiceSpec, _Mapping]] = ..., registry_auth: _Optional[_Union[_objects_pb2.RegistryAuth, _Mapping]] = ..., no_resolve_image: _Optional[bool] = ..., has_registry_auth: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("tasks", "node_names", "waiting")
    class NodeNamesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class WaitingEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NODE_NAMES_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Task]
    node_names: _containers.ScalarMap[str, str]
    waiting: _containers.ScalarMap[str, str]
    def __init__(self, tasks: _Optional[_Iterable[_Union[_objects_pb2.Task, _Mapping]]] = ..., node_names: _Optional[_Mapping[str, str]] = ..., waiting: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ServiceProgressRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class SlotProgress(_message.Message):
    __slots__ = ("slot", "node_id", "node_name", "task_id", "state", "desired_state", "message", "err", "spec_version", "attempt", "current", "settled", "has_task", "live", "stuck", "pull")
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
    PULL_FIELD_NUMBER: _ClassVar[int]
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
    pull: _objects_pb2.ImagePullProgress
    def __init__(self, slot: _Optional[int] = ..., node_id: _Optional[str] = ..., node_name: _Optional[str] = ..., task_id: _Optional[str] = ..., state: _Optional[_Union[_objects_pb2.TaskState, str]] = ..., desired_state: _Optional[_Union[_objects_pb2.TaskState, str]] = ..., message: _Optional[str] = ..., err: _Optional[str] = ..., spec_version: _Optional[int] = ..., attempt: _Optional[int] = ..., current: _Optional[bool] = ..., settled: _Optional[bool] = ..., has_task: _Optional[bool] = ..., live: _Optional[bool] = ..., stuck: _Optional[str] = ..., pull: _Optional[_Union[_objects_pb2.ImagePullProgress, _Mapping]] = ...) -> None: ...

class ServiceProgressResponse(_message.Message):
    __slots__ = ("service", "desired", "running", "slots", "stuck", "converged", "update_phase", "completed")
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
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    service: _objects_pb2.Service
    desired: int
    running: int
    slots: _containers.RepeatedCompositeFieldContainer[SlotProgress]
    stuck: str
    converged: bool
    update_phase: ServiceProgressResponse.UpdatePhase
    completed: int
    def __init__(self, service: _Optional[_Union[_objects_pb2.Service, _Mapping]] = ..., desired: _Optional[int] = ..., running: _Optional[int] = ..., slots: _Optional[_Iterable[_Union[SlotProgress, _Mapping]]] = ..., stuck: _Optional[str] = ..., converged: _Optional[bool] = ..., update_phase: _Optional[_Union[ServiceProgressResponse.UpdatePhase, str]] = ..., completed: _Optional[int] = ...) -> None: ...

class ServiceLogsRequest(_message.Message):
    __slots__ = ("ref", "follow", "tail", "timestamps", "since", "until", "details")
    REF_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    ref: str
    follow: bool
    tail: int
    timestamps: bool
    since: float
    until: float
    details: bool
    def __init__(self, ref: _Optional[str] = ..., follow: _Optional[bool] = ..., tail: _Optional[int] = ..., timestamps: _Optional[bool] = ..., since: _Optional[float] = ..., until: _Optional[float] = ..., details: _Optional[bool] = ...) -> None: ...

class ServiceLogLine(_message.Message):
    __slots__ = ("task_id", "node_id", "node_name", "slot", "stream", "data", "service_name", "details")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    node_id: str
    node_name: str
    slot: int
    stream: str
    data: bytes
    service_name: str
    details: str
    def __init__(self, task_id: _Optional[str] = ..., node_id: _Optional[str] = ..., node_name: _Optional[str] = ..., slot: _Optional[int] = ..., stream: _Optional[str] = ..., data: _Optional[bytes] = ..., service_name: _Optional[str] = ..., details: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class BackupResponse(_message.Message):
    __slots__ = ("data", "generated_key", "key_kind")
    DATA_FIELD_NUMBER: _ClassVar[int]
    GENERATED_KEY_FIELD_NUMBER: _ClassVar[int]
    KEY_KIND_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    generated_key: str
    key_kind: str
    def __init__(self, data: _Optional[bytes] = ..., generated_key: _Optional[str] = ..., key_kind: _Optional[str] = ...) -> None: ...

class RestoreRequest(_message.Message):
    __slots__ = ("data", "advertise_addr", "key")
    DATA_FIELD_NUMBER: _ClassVar[int]
    ADVERTISE_ADDR_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    advertise_addr: str
    key: str
    def __init__(self, data: _Optional[bytes] = ..., advertise_addr: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class GetClusterRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterResponse(_message.Message):
    __slots__ = ("cluster",)
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    cluster: _objects_pb2.Cluster
    def __init__(self, cluster: _Optional[_Union[_objects_pb2.Cluster, _Mapping]] = ...) -> None: ...

class UpdateClusterRequest(_message.Message):
    __slots__ = ("spec", "version", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: _objects_pb2.ClusterSpec
    version: int
    request_id: str
    def __init__(self, spec: _Optional[_Union[_objects_pb2.ClusterSpec, _Mapping]] = ..., version: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetRootCARequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RotateRootCARequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RootCANodeProgress(_message.Message):
    __slots__ = ("node_id", "hostname", "state", "issuer_key_id")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ISSUER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    hostname: str
    state: str
    issuer_key_id: str
    def __init__(self, node_id: _Optional[str] = ..., hostname: _Optional[str] = ..., state: _Optional[str] = ..., issuer_key_id: _Optional[str] = ...) -> None: ...

class RootCAStatus(_message.Message):
    __slots__ = ("cert_pem", "digest", "rotating", "new_cert_pem", "new_digest", "started_at", "nodes", "nodes_renewed", "pending")
    CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    ROTATING_FIELD_NUMBER: _ClassVar[int]
    NEW_CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    NEW_DIGEST_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    NODES_RENEWED_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    cert_pem: bytes
    digest: str
    rotating: bool
    new_cert_pem: bytes
    new_digest: str
    started_at: float
    nodes: int
    nodes_renewed: int
    pending: _containers.RepeatedCompositeFieldContainer[RootCANodeProgress]
    def __init__(self, cert_pem: _Optional[bytes] = ..., digest: _Optional[str] = ..., rotating: _Optional[bool] = ..., new_cert_pem: _Optional[bytes] = ..., new_digest: _Optional[str] = ..., started_at: _Optional[float] = ..., nodes: _Optional[int] = ..., nodes_renewed: _Optional[int] = ..., pending: _Optional[_Iterable[_Union[RootCANodeProgress, _Mapping]]] = ...) -> None: ...

class UnlockRequest(_message.Message):
    __slots__ = ("unlock_key",)
    UNLOCK_KEY_FIELD_NUMBER: _ClassVar[int]
    unlock_key: str
    def __init__(self, unlock_key: _Optional[str] = ...) -> None: ...

class UnlockResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UnlockKeyRequest(_message.Message):
    __slots__ = ("rotate",)
    ROTATE_FIELD_NUMBER: _ClassVar[int]
    rotate: bool
    def __init__(self, rotate: _Optional[bool] = ...) -> None: ...

class UnlockKeyResponse(_message.Message):
    __slots__ = ("unlock_key",)
    UNLOCK_KEY_FIELD_NUMBER: _ClassVar[int]
    unlock_key: str
    def __init__(self, unlock_key: _Optional[str] = ...) -> None: ...

class SetAutolockRequest(_message.Message):
    __slots__ = ("autolock",)
    AUTOLOCK_FIELD_NUMBER: _ClassVar[int]
    autolock: bool
    def __init__(self, autolock: _Optional[bool] = ...) -> None: ...

class RotateRaftSecretRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RaftSecretStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RaftSecretStatus(_message.Message):
    __slots__ = ("epoch", "rotating", "rotated_at", "reason", "waiting_for")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    ROTATING_FIELD_NUMBER: _ClassVar[int]
    ROTATED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WAITING_FOR_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    rotating: bool
    rotated_at: float
    reason: str
    waiting_for: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, epoch: _Optional[int] = ..., rotating: _Optional[bool] = ..., rotated_at: _Optional[float] = ..., reason: _Optional[str] = ..., waiting_for: _Optional[_Iterable[str]] = ...) -> None: ...

class BackupTables(_message.Message):
    __slots__ = ("store_version", "clusters", "nodes", "services", "tasks", "networks", "secrets", "configs")
    STORE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    CONFIGS_FIELD_NUMBER: _ClassVar[int]
    store_version: int
    clusters: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Cluster]
    nodes: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Node]
    services: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Service]
    tasks: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Task]
    networks: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Network]
    secrets: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Secret]
    configs: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Config]
    def __init__(self, store_version: _Optional[int] = ..., clusters: _Optional[_Iterable[_Union[_objects_pb2.Cluster, _Mapping]]] = ..., nodes: _Optional[_Iterable[_Union[_objects_pb2.Node, _Mapping]]] = ..., services: _Optional[_Iterable[_Union[_objects_pb2.Service, _Mapping]]] = ..., tasks: _Optional[_Iterable[_Union[_objects_pb2.Task, _Mapping]]] = ..., networks: _Optional[_Iterable[_Union[_objects_pb2.Network, _Mapping]]] = ..., secrets: _Optional[_Iterable[_Union[_objects_pb2.Secret, _Mapping]]] = ..., configs: _Optional[_Iterable[_Union[_objects_pb2.Config, _Mapping]]] = ...) -> None: ...

class CreateSecretRequest(_message.Message):
    __slots__ = ("spec", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: _objects_pb2.SecretSpec
    request_id: str
    def __init__(self, spec: _Optional[_Union[_objects_pb2.SecretSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SecretResponse(_message.Message):
    __slots__ = ("secret",)
    SECRET_FIELD_NUMBER: _ClassVar[int]
    secret: _objects_pb2.Secret
    def __init__(self, secret: _Optional[_Union[_objects_pb2.Secret, _Mapping]] = ...) -> None: ...

class GetSecretRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class ListSecretsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSecretsResponse(_message.Message):
    __slots__ = ("secrets",)
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    secrets: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Secret]
    def __init__(self, secrets: _Optional[_Iterable[_Union[_objects_pb2.Secret, _Mapping]]] = ...) -> None: ...

class RemoveSecretRequest(_message.Message):
    __slots__ = ("ref", "request_id")
    REF_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ref: str
    request_id: str
    def __init__(self, ref: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class RemoveSecretResponse(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CreateConfigRequest(_message.Message):
    __slots__ = ("spec", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: _objects_pb2.ConfigSpec
    request_id: str
    def __init__(self, spec: _Optional[_Union[_objects_pb2.ConfigSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ConfigResponse(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: _objects_pb2.Config
    def __init__(self, config: _Optional[_Union[_objects_pb2.Config, _Mapping]] = ...) -> None: ...

class GetConfigRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class ListConfigsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListConfigsResponse(_message.Message):
    __slots__ = ("configs",)
    CONFIGS_FIELD_NUMBER: _ClassVar[int]
    configs: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Config]
    def __init__(self, configs: _Optional[_Iterable[_Union[_objects_pb2.Config, _Mapping]]] = ...) -> None: ...

class RemoveConfigRequest(_message.Message):
    __slots__ = ("ref", "request_id")
    REF_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ref: str
    request_id: str
    def __init__(self, ref: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class RemoveConfigResponse(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListImagesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeImage(_message.Message):
    __slots__ = ("node_id", "node_name", "image")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    node_name: str
    image: _objects_pb2.ImageRecord
    def __init__(self, node_id: _Optional[str] = ..., node_name: _Optional[str] = ..., image: _Optional[_Union[_objects_pb2.ImageRecord, _Mapping]] = ...) -> None: ...

class ListImagesResponse(_message.Message):
    __slots__ = ("images",)
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[NodeImage]
    def __init__(self, images: _Optional[_Iterable[_Union[NodeImage, _Mapping]]] = ...) -> None: ...

class RemoveImageRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class RemoveImageResponse(_message.Message):
    __slots__ = ("removed_from", "errors")
    REMOVED_FROM_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    removed_from: _containers.RepeatedScalarFieldContainer[str]
    errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, removed_from: _Optional[_Iterable[str]] = ..., errors: _Optional[_Iterable[str]] = ...) -> None: ...

class PushImageRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class ImageTransferProgress(_message.Message):
    __slots__ = ("node_id", "node_name", "state", "current", "total", "source", "error", "image_id")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    node_name: str
    state: str
    current: int
    total: int
    source: str
    error: str
    image_id: str
    def __init__(self, node_id: _Optional[str] = ..., node_name: _Optional[str] = ..., state: _Optional[str] = ..., current: _Optional[int] = ..., total: _Optional[int] = ..., source: _Optional[str] = ..., error: _Optional[str] = ..., image_id: _Optional[str] = ...) -> None: ...

class LoadImageChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...
