from swarmlet.api import objects_pb2 as _objects_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

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

class ExportImageRequest(_message.Message):
    __slots__ = ("image_id",)
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    def __init__(self, image_id: _Optional[str] = ...) -> None: ...

class ImageChunk(_message.Message):
    __slots__ = ("data", "image", "total")
    DATA_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    image: _objects_pb2.ImageRecord
    total: int
    def __init__(self, data: _Optional[bytes] = ..., image: _Optional[_Union[_objects_pb2.ImageRecord, _Mapping]] = ..., total: _Optional[int] = ...) -> None: ...

class FetchImageRequest(_message.Message):
    __slots__ = ("image_id", "sources")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    sources: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, image_id: _Optional[str] = ..., sources: _Optional[_Iterable[str]] = ...) -> None: ...

class FetchImageProgress(_message.Message):
    __slots__ = ("state", "current", "total", "source", "error")
    STATE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    state: str
    current: int
    total: int
    source: str
    error: str
    def __init__(self, state: _Optional[str] = ..., current: _Optional[int] = ..., total: _Optional[int] = ..., source: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class NodeRemoveImageRequest(_message.Message):
    __slots__ = ("image_id",)
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    def __init__(self, image_id: _Optional[str] = ...) -> None: ...

class NodeRemoveImageResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    def __init__(self, removed: _Optional[bool] = ...) -> None: ...
