from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class TaskLogsRequest(_message.Message):
    __slots__ = ("container_ids", "follow", "tail", "timestamps", "since", "until")
    CONTAINER_IDS_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    container_ids: _containers.RepeatedScalarFieldContainer[str]
    follow: bool
    tail: int
    timestamps: bool
    since: float
    until: float
    def __init__(self, container_ids: _Optional[_Iterable[str]] = ..., follow: _Optional[bool] = ..., tail: _Optional[int] = ..., timestamps: _Optional[bool] = ..., since: _Optional[float] = ..., until: _Optional[float] = ...) -> None: ...

class LogLine(_message.Message):
    __slots__ = ("container_id", "task_id", "node_id", "stream", "data")
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    task_id: str
    node_id: str
    stream: str
    data: bytes
    def __init__(self, container_id: _Optional[str] = ..., task_id: _Optional[str] = ..., node_id: _Optional[str] = ..., stream: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...
