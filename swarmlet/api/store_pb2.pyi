from swarmlet.api import objects_pb2 as _objects_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ObjectKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KIND_NODE: _ClassVar[ObjectKind]
    KIND_SERVICE: _ClassVar[ObjectKind]
    KIND_TASK: _ClassVar[ObjectKind]
    KIND_CLUSTER: _ClassVar[ObjectKind]
    KIND_NETWORK: _ClassVar[ObjectKind]
    KIND_SECRET: _ClassVar[ObjectKind]
    KIND_CONFIG: _ClassVar[ObjectKind]
KIND_NODE: ObjectKind
KIND_SERVICE: ObjectKind
KIND_TASK: ObjectKind
KIND_CLUSTER: ObjectKind
KIND_NETWORK: ObjectKind
KIND_SECRET: ObjectKind
KIND_CONFIG: ObjectKind

class PutAction(_message.Message):
    __slots__ = ("node", "service", "task", "cluster", "network", "secret", "config", "expected_version")
    NODE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    node: _objects_pb2.Node
    service: _objects_pb2.Service
    task: _objects_pb2.Task
    cluster: _objects_pb2.Cluster
    network: _objects_pb2.Network
    secret: _objects_pb2.Secret
    config: _objects_pb2.Config
    expected_version: int
    def __init__(self, node: _Optional[_Union[_objects_pb2.Node, _Mapping]] = ..., service: _Optional[_Union[_objects_pb2.Service, _Mapping]] = ..., task: _Optional[_Union[_objects_pb2.Task, _Mapping]] = ..., cluster: _Optional[_Union[_objects_pb2.Cluster, _Mapping]] = ..., network: _Optional[_Union[_objects_pb2.Network, _Mapping]] = ..., secret: _Optional[_Union[_objects_pb2.Secret, _Mapping]] = ..., config: _Optional[_Union[_objects_pb2.Config, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class DeleteAction(_message.Message):
    __slots__ = ("kind", "id", "expected_version")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    kind: ObjectKind
    id: str
    expected_version: int
    def __init__(self, kind: _Optional[_Union[ObjectKind, str]] = ..., id: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class TaskStatusAction(_message.Message):
    __slots__ = ("task_id", "node_id", "status")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    node_id: str
    status: _objects_pb2.TaskStatus
    def __init__(self, task_id: _Optional[str] = ..., node_id: _Optional[str] = ..., status: _Optional[_Union[_objects_pb2.TaskStatus, _Mapping]] = ...) -> None: ...

class TaskDesiredAction(_message.Message):
    __slots__ = ("task_id", "desired_state")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    DESIRED_STATE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    desired_state: _objects_pb2.TaskState
    def __init__(self, task_id: _Optional[str] = ..., desired_state: _Optional[_Union[_objects_pb2.TaskState, str]] = ...) -> None: ...

class NodeStatusAction(_message.Message):
    __slots__ = ("node_id", "status", "description", "certificate")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    status: _objects_pb2.NodeStatus
    description: _objects_pb2.NodeDescription
    certificate: _objects_pb2.NodeCertificate
    def __init__(self, node_id: _Optional[str] = ..., status: _Optional[_Union[_objects_pb2.NodeStatus, _Mapping]] = ..., description: _Optional[_Union[_objects_pb2.NodeDescription, _Mapping]] = ..., certificate: _Optional[_Union[_objects_pb2.NodeCertificate, _Mapping]] = ...) -> None: ...

class LeaderAction(_message.Message):
    __slots__ = ("node_id", "term")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    term: int
    def __init__(self, node_id: _Optional[str] = ..., term: _Optional[int] = ...) -> None: ...

class StoreAction(_message.Message):
    __slots__ = ("put", "delete", "task_status", "task_desired", "node_status", "leader")
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    TASK_STATUS_FIELD_NUMBER: _ClassVar[int]
    TASK_DESIRED_FIELD_NUMBER: _ClassVar[int]
    NODE_STATUS_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    put: PutAction
    delete: DeleteAction
    task_status: TaskStatusAction
    task_desired: TaskDesiredAction
    node_status: NodeStatusAction
    leader: LeaderAction
    def __init__(self, put: _Optional[_Union[PutAction, _Mapping]] = ..., delete: _Optional[_Union[DeleteAction, _Mapping]] = ..., task_status: _Optional[_Union[TaskStatusAction, _Mapping]] = ..., task_desired: _Optional[_Union[TaskDesiredAction, _Mapping]] = ..., node_status: _Optional[_Union[NodeStatusAction, _Mapping]] = ..., leader: _Optional[_Union[LeaderAction, _Mapping]] = ...) -> None: ...

class StoreBatch(_message.Message):
    __slots__ = ("actions", "timestamp", "request_id", "recreate")
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RECREATE_FIELD_NUMBER: _ClassVar[int]
    actions: _containers.RepeatedCompositeFieldContainer[StoreAction]
    timestamp: float
    request_id: str
    recreate: bool
    def __init__(self, actions: _Optional[_Iterable[_Union[StoreAction, _Mapping]]] = ..., timestamp: _Optional[float] = ..., request_id: _Optional[str] = ..., recreate: _Optional[bool] = ...) -> None: ...

class StoreResult(_message.Message):
    __slots__ = ("ok", "error", "version", "taken_kind", "taken_name")
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TAKEN_KIND_FIELD_NUMBER: _ClassVar[int]
    TAKEN_NAME_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    error: str
    version: int
    taken_kind: ObjectKind
    taken_name: str
    def __init__(self, ok: _Optional[bool] = ..., error: _Optional[str] = ..., version: _Optional[int] = ..., taken_kind: _Optional[_Union[ObjectKind, str]] = ..., taken_name: _Optional[str] = ...) -> None: ...
