from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImagePullPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PULL_MISSING: _ClassVar[ImagePullPolicy]
    PULL_ALWAYS: _ClassVar[ImagePullPolicy]
    PULL_NEVER: _ClassVar[ImagePullPolicy]

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NEW: _ClassVar[TaskState]
    PENDING: _ClassVar[TaskState]
    ASSIGNED: _ClassVar[TaskState]
    ACCEPTED: _ClassVar[TaskState]
    PREPARING: _ClassVar[TaskState]
    READY: _ClassVar[TaskState]
    STARTING: _ClassVar[TaskState]
    RUNNING: _ClassVar[TaskState]
    COMPLETE: _ClassVar[TaskState]
    SHUTDOWN: _ClassVar[TaskState]
    FAILED: _ClassVar[TaskState]
    REJECTED: _ClassVar[TaskState]
    REMOVE: _ClassVar[TaskState]
    ORPHANED: _ClassVar[TaskState]
PULL_MISSING: ImagePullPolicy
PULL_ALWAYS: ImagePullPolicy
PULL_NEVER: ImagePullPolicy
NEW: TaskState
PENDING: TaskState
ASSIGNED: TaskState
ACCEPTED: TaskState
PREPARING: TaskState
READY: TaskState
STARTING: TaskState
RUNNING: TaskState
COMPLETE: TaskState
SHUTDOWN: TaskState
FAILED: TaskState
REJECTED: TaskState
REMOVE: TaskState
ORPHANED: TaskState

class Meta(_message.Message):
    __slots__ = ("version", "created_at", "updated_at")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    version: int
    created_at: float
    updated_at: float
    def __init__(self, version: _Optional[int] = ..., created_at: _Optional[float] = ..., updated_at: _Optional[float] = ...) -> None: ...

class Resources(_message.Message):
    __slots__ = ("nano_cpus", "memory_bytes", "generic", "pids")
    NANO_CPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    GENERIC_FIELD_NUMBER: _ClassVar[int]
    PIDS_FIELD_NUMBER: _ClassVar[int]
    nano_cpus: int
    memory_bytes: int
    generic: _containers.RepeatedCompositeFieldContainer[GenericResource]
    pids: int
    def __init__(self, nano_cpus: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., generic: _Optional[_Iterable[_Union[GenericResource, _Mapping]]] = ..., pids: _Optional[int] = ...) -> None: ...

class GenericResource(_message.Message):
    __slots__ = ("kind", "named_value", "discrete_value")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMED_VALUE_FIELD_NUMBER: _ClassVar[int]
    DISCRETE_VALUE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    named_value: str
    discrete_value: int
    def __init__(self, kind: _Optional[str] = ..., named_value: _Optional[str] = ..., discrete_value: _Optional[int] = ...) -> None: ...

class ResourceRequirements(_message.Message):
    __slots__ = ("limits", "reservations")
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    limits: Resources
    reservations: Resources
    def __init__(self, limits: _Optional[_Union[Resources, _Mapping]] = ..., reservations: _Optional[_Union[Resources, _Mapping]] = ...) -> None: ...

class RestartPolicy(_message.Message):
    __slots__ = ("condition", "delay", "max_attempts", "window")
    class Condition(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ANY: _ClassVar[RestartPolicy.Condition]
        ON_FAILURE: _ClassVar[RestartPolicy.Condition]
        NONE: _ClassVar[RestartPolicy.Condition]
    ANY: RestartPolicy.Condition
    ON_FAILURE: RestartPolicy.Condition
    NONE: RestartPolicy.Condition
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    DELAY_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    condition: RestartPolicy.Condition
    delay: float
    max_attempts: int
    window: float
    def __init__(self, condition: _Optional[_Union[RestartPolicy.Condition, str]] = ..., delay: _Optional[float] = ..., max_attempts: _Optional[int] = ..., window: _Optional[float] = ...) -> None: ...

class HealthConfig(_message.Message):
    __slots__ = ("test", "interval", "timeout", "retries", "start_period", "start_interval")
    TEST_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    START_PERIOD_FIELD_NUMBER: _ClassVar[int]
    START_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    test: _containers.RepeatedScalarFieldContainer[str]
    interval: float
    timeout: float
    retries: int
    start_period: float
    start_interval: float
    def __init__(self, test: _Optional[_Iterable[str]] = ..., interval: _Optional[float] = ..., timeout: _Optional[float] = ..., retries: _Optional[int] = ..., start_period: _Optional[float] = ..., start_interval: _Optional[float] = ...) -> None: ...

class ContainerSpec(_message.Message):
    __slots__ = ("image", "command", "args", "env", "labels", "stop_grace_period", "healthcheck", "has_healthcheck", "pull", "image_id", "mounts", "secrets", "configs", "user", "dir", "hostname", "init", "read_only", "cap_add", "cap_drop", "sysctls", "ulimits", "stop_signal", "groups", "tty", "dns_config", "hosts")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SysctlsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    STOP_GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    HEALTHCHECK_FIELD_NUMBER: _ClassVar[int]
    HAS_HEALTHCHECK_FIELD_NUMBER: _ClassVar[int]
    PULL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    MOUNTS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    CONFIGS_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    DIR_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    INIT_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    CAP_ADD_FIELD_NUMBER: _ClassVar[int]
    CAP_DROP_FIELD_NUMBER: _ClassVar[int]
    SYSCTLS_FIELD_NUMBER: _ClassVar[int]
    ULIMITS_FIELD_NUMBER: _ClassVar[int]
    STOP_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    TTY_FIELD_NUMBER: _ClassVar[int]
    DNS_CONFIG_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    image: str
    command: _containers.RepeatedScalarFieldContainer[str]
    args: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.ScalarMap[str, str]
    stop_grace_period: float
    healthcheck: HealthConfig
    has_healthcheck: bool
    pull: ImagePullPolicy
    image_id: str
    mounts: _containers.RepeatedCompositeFieldContainer[Mount]
    secrets: _containers.RepeatedCompositeFieldContainer[SecretReference]
    configs: _containers.RepeatedCompositeFieldContainer[ConfigReference]
    user: str
    dir: str
    hostname: str
    init: bool
    read_only: bool
    cap_add: _containers.RepeatedScalarFieldContainer[str]
    cap_drop: _containers.RepeatedScalarFieldContainer[str]
    sysctls: _containers.ScalarMap[str, str]
    ulimits: _containers.RepeatedCompositeFieldContainer[Ulimit]
    stop_signal: str
    groups: _containers.RepeatedScalarFieldContainer[str]
    tty: bool
    dns_config: DNSConfig
    hosts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, image: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., args: _Optional[_Iterable[str]] = ..., env: _Optional[_Iterable[str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., stop_grace_period: _Optional[float] = ..., healthcheck: _Optional[_Union[HealthConfig, _Mapping]] = ..., has_healthcheck: _Optional[bool] = ..., pull: _Optional[_Union[ImagePullPolicy, str]] = ..., image_id: _Optional[str] = ..., mounts: _Optional[_Iterable[_Union[Mount, _Mapping]]] = ..., secrets: _Optional[_Iterable[_Union[SecretReference, _Mapping]]] = ..., configs: _Optional[_Iterable[_Union[ConfigReference, _Mapping]]] = ..., user: _Optional[str] = ..., dir: _Optional[str] = ..., hostname: _Optional[str] = ..., init: _Optional[bool] = ..., read_only: _Optional[bool] = ..., cap_add: _Optional[_Iterable[str]] = ..., cap_drop: _Optional[_Iterable[str]] = ..., sysctls: _Optional[_Mapping[str, str]] = ..., ulimits: _Optional[_Iterable[_Union[Ulimit, _Mapping]]] = ..., stop_signal: _Optional[str] = ..., groups: _Optional[_Iterable[str]] = ..., tty: _Optional[bool] = ..., dns_config: _Optional[_Union[DNSConfig, _Mapping]] = ..., hosts: _Optional[_Iterable[str]] = ...) -> None: ...

class RegistryAuth(_message.Message):
    __slots__ = ("server_address", "username", "password", "identity_token", "registry_token")
    SERVER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    server_address: str
    username: str
    password: str
    identity_token: str
    registry_token: str
    def __init__(self, server_address: _Optional[str] = ..., username: _Optional[str] = ..., password: _Optional[str] = ..., identity_token: _Optional[str] = ..., registry_token: _Optional[str] = ...) -> None: ...

class ImageRecord(_message.Message):
    __slots__ = ("id", "tags", "digests", "size")
    ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    digests: _containers.RepeatedScalarFieldContainer[str]
    size: int
    def __init__(self, id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., digests: _Optional[_Iterable[str]] = ..., size: _Optional[int] = ...) -> None: ...

class ImagePullProgress(_message.Message):
    __slots__ = ("image", "current", "total", "source")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    image: str
    current: int
    total: int
    source: str
    def __init__(self, image: _Optional[str] = ..., current: _Optional[int] = ..., total: _Optional[int] = ..., source: _Optional[str] = ...) -> None: ...

class Mount(_message.Message):
    __slots__ = ("type", "source", "target", "read_only", "volume_driver", "volume_options", "volume_labels", "volume_nocopy", "tmpfs_size", "tmpfs_mode")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        VOLUME: _ClassVar[Mount.Type]
        BIND: _ClassVar[Mount.Type]
        TMPFS: _ClassVar[Mount.Type]
    VOLUME: Mount.Type
    BIND: Mount.Type
    TMPFS: Mount.Type
    class VolumeOptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class VolumeLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    VOLUME_DRIVER_FIELD_NUMBER: _ClassVar[int]
    VOLUME_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    VOLUME_LABELS_FIELD_NUMBER: _ClassVar[int]
    VOLUME_NOCOPY_FIELD_NUMBER: _ClassVar[int]
    TMPFS_SIZE_FIELD_NUMBER: _ClassVar[int]
    TMPFS_MODE_FIELD_NUMBER: _ClassVar[int]
    type: Mount.Type
    source: str
    target: str
    read_only: bool
    volume_driver: str
    volume_options: _containers.ScalarMap[str, str]
    volume_labels: _containers.ScalarMap[str, str]
    volume_nocopy: bool
    tmpfs_size: int
    tmpfs_mode: int
    def __init__(self, type: _Optional[_Union[Mount.Type, str]] = ..., source: _Optional[str] = ..., target: _Optional[str] = ..., read_only: _Optional[bool] = ..., volume_driver: _Optional[str] = ..., volume_options: _Optional[_Mapping[str, str]] = ..., volume_labels: _Optional[_Mapping[str, str]] = ..., volume_nocopy: _Optional[bool] = ..., tmpfs_size: _Optional[int] = ..., tmpfs_mode: _Optional[int] = ...) -> None: ...

class FileTarget(_message.Message):
    __slots__ = ("name", "uid", "gid", "mode")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    name: str
    uid: str
    gid: str
    mode: int
    def __init__(self, name: _Optional[str] = ..., uid: _Optional[str] = ..., gid: _Optional[str] = ..., mode: _Optional[int] = ...) -> None: ...

class SecretReference(_message.Message):
    __slots__ = ("secret_id", "secret_name", "file")
    SECRET_ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_NAME_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    secret_id: str
    secret_name: str
    file: FileTarget
    def __init__(self, secret_id: _Optional[str] = ..., secret_name: _Optional[str] = ..., file: _Optional[_Union[FileTarget, _Mapping]] = ...) -> None: ...

class ConfigReference(_message.Message):
    __slots__ = ("config_id", "config_name", "file")
    CONFIG_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_NAME_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    config_id: str
    config_name: str
    file: FileTarget
    def __init__(self, config_id: _Optional[str] = ..., config_name: _Optional[str] = ..., file: _Optional[_Union[FileTarget, _Mapping]] = ...) -> None: ...

class SecretSpec(_message.Message):
    __slots__ = ("name", "labels", "data")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    data: bytes
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Secret(_message.Message):
    __slots__ = ("id", "meta", "spec")
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    id: str
    meta: Meta
    spec: SecretSpec
    def __init__(self, id: _Optional[str] = ..., meta: _Optional[_Union[Meta, _Mapping]] = ..., spec: _Optional[_Union[SecretSpec, _Mapping]] = ...) -> None: ...

class ConfigSpec(_message.Message):
    __slots__ = ("name", "labels", "data")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    data: bytes
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Config(_message.Message):
    __slots__ = ("id", "meta", "spec")
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    id: str
    meta: Meta
    spec: ConfigSpec
    def __init__(self, id: _Optional[str] = ..., meta: _Optional[_Union[Meta, _Mapping]] = ..., spec: _Optional[_Union[ConfigSpec, _Mapping]] = ...) -> None: ...

class Ulimit(_message.Message):
    __slots__ = ("name", "soft", "hard")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOFT_FIELD_NUMBER: _ClassVar[int]
    HARD_FIELD_NUMBER: _ClassVar[int]
    name: str
    soft: int
    hard: int
    def __init__(self, name: _Optional[str] = ..., soft: _Optional[int] = ..., hard: _Optional[int] = ...) -> None: ...

class DNSConfig(_message.Message):
    __slots__ = ("nameservers", "search", "options")
    NAMESERVERS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    nameservers: _containers.RepeatedScalarFieldContainer[str]
    search: _containers.RepeatedScalarFieldContainer[str]
    options: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, nameservers: _Optional[_Iterable[str]] = ..., search: _Optional[_Iterable[str]] = ..., options: _Optional[_Iterable[str]] = ...) -> None: ...

class LogDriver(_message.Message):
    __slots__ = ("name", "options")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    options: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PlacementPreference(_message.Message):
    __slots__ = ("spread",)
    SPREAD_FIELD_NUMBER: _ClassVar[int]
    spread: str
    def __init__(self, spread: _Optional[str] = ...) -> None: ...

class Platform(_message.Message):
    __slots__ = ("os", "architecture")
    OS_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    os: str
    architecture: str
    def __init__(self, os: _Optional[str] = ..., architecture: _Optional[str] = ...) -> None: ...

class Placement(_message.Message):
    __slots__ = ("constraints", "preferences", "max_replicas", "platforms")
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    PREFERENCES_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    PLATFORMS_FIELD_NUMBER: _ClassVar[int]
    constraints: _containers.RepeatedScalarFieldContainer[str]
    preferences: _containers.RepeatedCompositeFieldContainer[PlacementPreference]
    max_replicas: int
    platforms: _containers.RepeatedCompositeFieldContainer[Platform]
    def __init__(self, constraints: _Optional[_Iterable[str]] = ..., preferences: _Optional[_Iterable[_Union[PlacementPreference, _Mapping]]] = ..., max_replicas: _Optional[int] = ..., platforms: _Optional[_Iterable[_Union[Platform, _Mapping]]] = ...) -> None: ...

class TaskSpec(_message.Message):
    __slots__ = ("container", "resources", "restart", "placement", "force_update", "log_driver")
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    RESTART_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    FORCE_UPDATE_FIELD_NUMBER: _ClassVar[int]
    LOG_DRIVER_FIELD_NUMBER: _ClassVar[int]
    container: ContainerSpec
    resources: ResourceRequirements
    restart: RestartPolicy
    placement: Placement
    force_update: int
    log_driver: LogDriver
    def __init__(self, container: _Optional[_Union[ContainerSpec, _Mapping]] = ..., resources: _Optional[_Union[ResourceRequirements, _Mapping]] = ..., restart: _Optional[_Union[RestartPolicy, _Mapping]] = ..., placement: _Optional[_Union[Placement, _Mapping]] = ..., force_update: _Optional[int] = ..., log_driver: _Optional[_Union[LogDriver, _Mapping]] = ...) -> None: ...

class ReplicatedService(_message.Message):
    __slots__ = ("replicas",)
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    replicas: int
    def __init__(self, replicas: _Optional[int] = ...) -> None: ...

class GlobalService(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReplicatedJob(_message.Message):
    __slots__ = ("max_concurrent", "total_completions")
    MAX_CONCURRENT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COMPLETIONS_FIELD_NUMBER: _ClassVar[int]
    max_concurrent: int
    total_completions: int
    def __init__(self, max_concurrent: _Optional[int] = ..., total_completions: _Optional[int] = ...) -> None: ...

class GlobalJob(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class JobStatus(_message.Message):
    __slots__ = ("iteration", "last_execution")
    ITERATION_FIELD_NUMBER: _ClassVar[int]
    LAST_EXECUTION_FIELD_NUMBER: _ClassVar[int]
    iteration: int
    last_execution: float
    def __init__(self, iteration: _Optional[int] = ..., last_execution: _Optional[float] = ...) -> None: ...

class UpdateConfig(_message.Message):
    __slots__ = ("parallelism", "delay", "failure_action", "monitor", "max_failure_ratio", "order", "canary", "auto_promote")
    class FailureAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PAUSE: _ClassVar[UpdateConfig.FailureAction]
        CONTINUE: _ClassVar[UpdateConfig.FailureAction]
        ROLLBACK: _ClassVar[UpdateConfig.FailureAction]
    PAUSE: UpdateConfig.FailureAction
    CONTINUE: UpdateConfig.FailureAction
    ROLLBACK: UpdateConfig.FailureAction
    class Order(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STOP_FIRST: _ClassVar[UpdateConfig.Order]
        START_FIRST: _ClassVar[UpdateConfig.Order]
    STOP_FIRST: UpdateConfig.Order
    START_FIRST: UpdateConfig.Order
    PARALLELISM_FIELD_NUMBER: _ClassVar[int]
    DELAY_FIELD_NUMBER: _ClassVar[int]
    FAILURE_ACTION_FIELD_NUMBER: _ClassVar[int]
    MONITOR_FIELD_NUMBER: _ClassVar[int]
    MAX_FAILURE_RATIO_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    AUTO_PROMOTE_FIELD_NUMBER: _ClassVar[int]
    parallelism: int
    delay: float
    failure_action: UpdateConfig.FailureAction
    monitor: float
    max_failure_ratio: float
    order: UpdateConfig.Order
    canary: int
    auto_promote: bool
    def __init__(self, parallelism: _Optional[int] = ..., delay: _Optional[float] = ..., failure_action: _Optional[_Union[UpdateConfig.FailureAction, str]] = ..., monitor: _Optional[float] = ..., max_failure_ratio: _Optional[float] = ..., order: _Optional[_Union[UpdateConfig.Order, str]] = ..., canary: _Optional[int] = ..., auto_promote: _Optional[bool] = ...) -> None: ...

class PortConfig(_message.Message):
    __slots__ = ("protocol", "target_port", "published_port", "publish_mode")
    class Protocol(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TCP: _ClassVar[PortConfig.Protocol]
        UDP: _ClassVar[PortConfig.Protocol]
        SCTP: _ClassVar[PortConfig.Protocol]
    TCP: PortConfig.Protocol
    UDP: PortConfig.Protocol
    SCTP: PortConfig.Protocol
    class PublishMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        INGRESS: _ClassVar[PortConfig.PublishMode]
        HOST: _ClassVar[PortConfig.PublishMode]
    INGRESS: PortConfig.PublishMode
    HOST: PortConfig.PublishMode
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    TARGET_PORT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_PORT_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_MODE_FIELD_NUMBER: _ClassVar[int]
    protocol: PortConfig.Protocol
    target_port: int
    published_port: int
    publish_mode: PortConfig.PublishMode
    def __init__(self, protocol: _Optional[_Union[PortConfig.Protocol, str]] = ..., target_port: _Optional[int] = ..., published_port: _Optional[int] = ..., publish_mode: _Optional[_Union[PortConfig.PublishMode, str]] = ...) -> None: ...

class EndpointSpec(_message.Message):
    __slots__ = ("mode", "ports")
    class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        VIP: _ClassVar[EndpointSpec.Mode]
        DNSRR: _ClassVar[EndpointSpec.Mode]
    VIP: EndpointSpec.Mode
    DNSRR: EndpointSpec.Mode
    MODE_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    mode: EndpointSpec.Mode
    ports: _containers.RepeatedCompositeFieldContainer[PortConfig]
    def __init__(self, mode: _Optional[_Union[EndpointSpec.Mode, str]] = ..., ports: _Optional[_Iterable[_Union[PortConfig, _Mapping]]] = ...) -> None: ...

class NetworkAttachmentConfig(_message.Message):
    __slots__ = ("target", "aliases")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    target: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, target: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ...) -> None: ...

class ServiceSpec(_message.Message):
    __slots__ = ("name", "labels", "task", "replicated", "replicated_job", "global_job", "update", "rollback", "networks", "endpoint")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    REPLICATED_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_FIELD_NUMBER: _ClassVar[int]
    REPLICATED_JOB_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_JOB_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    task: TaskSpec
    replicated: ReplicatedService
    replicated_job: ReplicatedJob
    global_job: GlobalJob
    update: UpdateConfig
    rollback: UpdateConfig
    networks: _containers.RepeatedCompositeFieldContainer[NetworkAttachmentConfig]
    endpoint: EndpointSpec
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., task: _Optional[_Union[TaskSpec, _Mapping]] = ..., replicated: _Optional[_Union[ReplicatedService, _Mapping]] = ..., replicated_job: _Optional[_Union[ReplicatedJob, _Mapping]] = ..., global_job: _Optional[_Union[GlobalJob, _Mapping]] = ..., update: _Optional[_Union[UpdateConfig, _Mapping]] = ..., rollback: _Optional[_Union[UpdateConfig, _Mapping]] = ..., networks: _Optional[_Iterable[_Union[NetworkAttachmentConfig, _Mapping]]] = ..., endpoint: _Optional[_Union[EndpointSpec, _Mapping]] = ..., **kwargs) -> None: ...

class VirtualIP(_message.Message):
    __slots__ = ("network_id", "addr")
    NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    network_id: str
    addr: str
    def __init__(self, network_id: _Optional[str] = ..., addr: _Optional[str] = ...) -> None: ...

class UpdateStatus(_message.Message):
    __slots__ = ("state", "started_at", "completed_at", "message", "canaries_ready", "promoted")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        NONE: _ClassVar[UpdateStatus.State]
        UPDATING: _ClassVar[UpdateStatus.State]
        PAUSED: _ClassVar[UpdateStatus.State]
        COMPLETED: _ClassVar[UpdateStatus.State]
        ROLLBACK_STARTED: _ClassVar[UpdateStatus.State]
        ROLLBACK_PAUSED: _ClassVar[UpdateStatus.State]
        ROLLBACK_COMPLETED: _ClassVar[UpdateStatus.State]
    NONE: UpdateStatus.State
    UPDATING: UpdateStatus.State
    PAUSED: UpdateStatus.State
    COMPLETED: UpdateStatus.State
    ROLLBACK_STARTED: UpdateStatus.State
    ROLLBACK_PAUSED: UpdateStatus.State
    ROLLBACK_COMPLETED: UpdateStatus.State
    STATE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CANARIES_READY_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_FIELD_NUMBER: _ClassVar[int]
    state: UpdateStatus.State
    started_at: float
    completed_at: float
    message: str
    canaries_ready: bool
    promoted: bool
    def __init__(self, state: _Optional[_Union[UpdateStatus.State, str]] = ..., started_at: _Optional[float] = ..., completed_at: _Optional[float] = ..., message: _Optional[str] = ..., canaries_ready: _Optional[bool] = ..., promoted: _Optional[bool] = ...) -> None: ...

class Service(_message.Message):
    __slots__ = ("id", "meta", "spec", "previous_spec", "spec_version", "update_status", "virtual_ips", "registry_auth", "job_status")
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SPEC_FIELD_NUMBER: _ClassVar[int]
    SPEC_VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_STATUS_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_IPS_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_AUTH_FIELD_NUMBER: _ClassVar[int]
    JOB_STATUS_FIELD_NUMBER: _ClassVar[int]
    id: str
    meta: Meta
    spec: ServiceSpec
    previous_spec: ServiceSpec
    spec_version: int
    update_status: UpdateStatus
    virtual_ips: _containers.RepeatedCompositeFieldContainer[VirtualIP]
    registry_auth: RegistryAuth
    job_status: JobStatus
    def __init__(self, id: _Optional[str] = ..., meta: _Optional[_Union[Meta, _Mapping]] = ..., spec: _Optional[_Union[ServiceSpec, _Mapping]] = ..., previous_spec: _Optional[_Union[ServiceSpec, _Mapping]] = ..., spec_version: _Optional[int] = ..., update_status: _Optional[_Union[UpdateStatus, _Mapping]] = ..., virtual_ips: _Optional[_Iterable[_Union[VirtualIP, _Mapping]]] = ..., registry_auth: _Optional[_Union[RegistryAuth, _Mapping]] = ..., job_status: _Optional[_Union[JobStatus, _Mapping]] = ...) -> None: ...

class TaskStatus(_message.Message):
    __slots__ = ("timestamp", "state", "message", "err", "container_id", "exit_code", "pull")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ERR_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    PULL_FIELD_NUMBER: _ClassVar[int]
    timestamp: float
    state: TaskState
    message: str
    err: str
    container_id: str
    exit_code: int
    pull: ImagePullProgress
    def __init__(self, timestamp: _Optional[float] = ..., state: _Optional[_Union[TaskState, str]] = ..., message: _Optional[str] = ..., err: _Optional[str] = ..., container_id: _Optional[str] = ..., exit_code: _Optional[int] = ..., pull: _Optional[_Union[ImagePullProgress, _Mapping]] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("id", "meta", "service_id", "service_name", "slot", "node_id", "spec", "spec_version", "desired_state", "status", "avoid_nodes", "attempt", "running_at", "networks", "job_iteration", "service_labels", "assigned_generic")
    class ServiceLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SPEC_VERSION_FIELD_NUMBER: _ClassVar[int]
    DESIRED_STATE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    AVOID_NODES_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    RUNNING_AT_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    JOB_ITERATION_FIELD_NUMBER: _ClassVar[int]
    SERVICE_LABELS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_GENERIC_FIELD_NUMBER: _ClassVar[int]
    id: str
    meta: Meta
    service_id: str
    service_name: str
    slot: int
    node_id: str
    spec: TaskSpec
    spec_version: int
    desired_state: TaskState
    status: TaskStatus
    avoid_nodes: _containers.RepeatedScalarFieldContainer[str]
    attempt: int
    running_at: float
    networks: _containers.RepeatedCompositeFieldContainer[NetworkAttachment]
    job_iteration: int
    service_labels: _containers.ScalarMap[str, str]
    assigned_generic: _containers.RepeatedCompositeFieldContainer[GenericResource]
    def __init__(self, id: _Optional[str] = ..., meta: _Optional[_Union[Meta, _Mapping]] = ..., service_id: _Optional[str] = ..., service_name: _Optional[str] = ..., slot: _Optional[int] = ..., node_id: _Optional[str] = ..., spec: _Optional[_Union[TaskSpec, _Mapping]] = ..., spec_version: _Optional[int] = ..., desired_state: _Optional[_Union[TaskState, str]] = ..., status: _Optional[_Union[TaskStatus, _Mapping]] = ..., avoid_nodes: _Optional[_Iterable[str]] = ..., attempt: _Optional[int] = ..., running_at: _Optional[float] = ..., networks: _Optional[_Iterable[_Union[NetworkAttachment, _Mapping]]] = ..., job_iteration: _Optional[int] = ..., service_labels: _Optional[_Mapping[str, str]] = ..., assigned_generic: _Optional[_Iterable[_Union[GenericResource, _Mapping]]] = ...) -> None: ...

class NetworkAttachment(_message.Message):
    __slots__ = ("network_id", "addr")
    NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    network_id: str
    addr: str
    def __init__(self, network_id: _Optional[str] = ..., addr: _Optional[str] = ...) -> None: ...

class NetworkSpec(_message.Message):
    __slots__ = ("name", "labels", "driver", "subnet", "gateway", "attachable", "ingress")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    SUBNET_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    ATTACHABLE_FIELD_NUMBER: _ClassVar[int]
    INGRESS_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    driver: str
    subnet: str
    gateway: str
    attachable: bool
    ingress: bool
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., driver: _Optional[str] = ..., subnet: _Optional[str] = ..., gateway: _Optional[str] = ..., attachable: _Optional[bool] = ..., ingress: _Optional[bool] = ...) -> None: ...

class Network(_message.Message):
    __slots__ = ("id", "meta", "spec", "subnet", "gateway", "vni", "error", "node_addrs")
    class NodeAddrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SUBNET_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    VNI_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    NODE_ADDRS_FIELD_NUMBER: _ClassVar[int]
    id: str
    meta: Meta
    spec: NetworkSpec
    subnet: str
    gateway: str
    vni: int
    error: str
    node_addrs: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., meta: _Optional[_Union[Meta, _Mapping]] = ..., spec: _Optional[_Union[NetworkSpec, _Mapping]] = ..., subnet: _Optional[str] = ..., gateway: _Optional[str] = ..., vni: _Optional[int] = ..., error: _Optional[str] = ..., node_addrs: _Optional[_Mapping[str, str]] = ...) -> None: ...

class NodeSpec(_message.Message):
    __slots__ = ("labels", "desired_role", "availability")
    class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        WORKER: _ClassVar[NodeSpec.Role]
        MANAGER: _ClassVar[NodeSpec.Role]
    WORKER: NodeSpec.Role
    MANAGER: NodeSpec.Role
    class Availability(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTIVE: _ClassVar[NodeSpec.Availability]
        PAUSE: _ClassVar[NodeSpec.Availability]
        DRAIN: _ClassVar[NodeSpec.Availability]
    ACTIVE: NodeSpec.Availability
    PAUSE: NodeSpec.Availability
    DRAIN: NodeSpec.Availability
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LABELS_FIELD_NUMBER: _ClassVar[int]
    DESIRED_ROLE_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.ScalarMap[str, str]
    desired_role: NodeSpec.Role
    availability: NodeSpec.Availability
    def __init__(self, labels: _Optional[_Mapping[str, str]] = ..., desired_role: _Optional[_Union[NodeSpec.Role, str]] = ..., availability: _Optional[_Union[NodeSpec.Availability, str]] = ...) -> None: ...

class NodeDescription(_message.Message):
    __slots__ = ("hostname", "resources", "engine_version", "os", "arch", "images", "image_records", "engine_labels", "engine_subnets")
    class EngineLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    ENGINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_RECORDS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_LABELS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_SUBNETS_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    resources: Resources
    engine_version: str
    os: str
    arch: str
    images: _containers.RepeatedScalarFieldContainer[str]
    image_records: _containers.RepeatedCompositeFieldContainer[ImageRecord]
    engine_labels: _containers.ScalarMap[str, str]
    engine_subnets: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, hostname: _Optional[str] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., engine_version: _Optional[str] = ..., os: _Optional[str] = ..., arch: _Optional[str] = ..., images: _Optional[_Iterable[str]] = ..., image_records: _Optional[_Iterable[_Union[ImageRecord, _Mapping]]] = ..., engine_labels: _Optional[_Mapping[str, str]] = ..., engine_subnets: _Optional[_Iterable[str]] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("state", "message", "addr", "timestamp")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[NodeStatus.State]
        DOWN: _ClassVar[NodeStatus.State]
        READY: _ClassVar[NodeStatus.State]
        DISCONNECTED: _ClassVar[NodeStatus.State]
    UNKNOWN: NodeStatus.State
    DOWN: NodeStatus.State
    READY: NodeStatus.State
    DISCONNECTED: NodeStatus.State
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    state: NodeStatus.State
    message: str
    addr: str
    timestamp: float
    def __init__(self, state: _Optional[_Union[NodeStatus.State, str]] = ..., message: _Optional[str] = ..., addr: _Optional[str] = ..., timestamp: _Optional[float] = ...) -> None: ...

class ManagerStatus(_message.Message):
    __slots__ = ("raft_addr", "api_addr", "reachability", "leader")
    class Reachability(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[ManagerStatus.Reachability]
        UNREACHABLE: _ClassVar[ManagerStatus.Reachability]
        REACHABLE: _ClassVar[ManagerStatus.Reachability]
    UNKNOWN: ManagerStatus.Reachability
    UNREACHABLE: ManagerStatus.Reachability
    REACHABLE: ManagerStatus.Reachability
    RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    API_ADDR_FIELD_NUMBER: _ClassVar[int]
    REACHABILITY_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    raft_addr: str
    api_addr: str
    reachability: ManagerStatus.Reachability
    leader: bool
    def __init__(self, raft_addr: _Optional[str] = ..., api_addr: _Optional[str] = ..., reachability: _Optional[_Union[ManagerStatus.Reachability, str]] = ..., leader: _Optional[bool] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("id", "meta", "spec", "description", "status", "role", "manager_status", "api_addr", "raft_addr", "certificate", "issued")
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    MANAGER_STATUS_FIELD_NUMBER: _ClassVar[int]
    API_ADDR_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    ISSUED_FIELD_NUMBER: _ClassVar[int]
    id: str
    meta: Meta
    spec: NodeSpec
    description: NodeDescription
    status: NodeStatus
    role: NodeSpec.Role
    manager_status: ManagerStatus
    api_addr: str
    raft_addr: str
    certificate: NodeCertificate
    issued: _containers.RepeatedCompositeFieldContainer[NodeCertificate]
    def __init__(self, id: _Optional[str] = ..., meta: _Optional[_Union[Meta, _Mapping]] = ..., spec: _Optional[_Union[NodeSpec, _Mapping]] = ..., description: _Optional[_Union[NodeDescription, _Mapping]] = ..., status: _Optional[_Union[NodeStatus, _Mapping]] = ..., role: _Optional[_Union[NodeSpec.Role, str]] = ..., manager_status: _Optional[_Union[ManagerStatus, _Mapping]] = ..., api_addr: _Optional[str] = ..., raft_addr: _Optional[str] = ..., certificate: _Optional[_Union[NodeCertificate, _Mapping]] = ..., issued: _Optional[_Iterable[_Union[NodeCertificate, _Mapping]]] = ...) -> None: ...

class NodeCertificate(_message.Message):
    __slots__ = ("serial", "role", "not_before", "not_after", "issuer_key_id")
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    ISSUER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    serial: str
    role: str
    not_before: float
    not_after: float
    issuer_key_id: str
    def __init__(self, serial: _Optional[str] = ..., role: _Optional[str] = ..., not_before: _Optional[float] = ..., not_after: _Optional[float] = ..., issuer_key_id: _Optional[str] = ...) -> None: ...

class ClusterSpec(_message.Message):
    __slots__ = ("heartbeat_period", "node_down_after", "task_history_limit", "default_address_pool", "default_subnet_size", "autolock", "node_cert_expiry")
    HEARTBEAT_PERIOD_FIELD_NUMBER: _ClassVar[int]
    NODE_DOWN_AFTER_FIELD_NUMBER: _ClassVar[int]
    TASK_HISTORY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_ADDRESS_POOL_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_SUBNET_SIZE_FIELD_NUMBER: _ClassVar[int]
    AUTOLOCK_FIELD_NUMBER: _ClassVar[int]
    NODE_CERT_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    heartbeat_period: float
    node_down_after: float
    task_history_limit: int
    default_address_pool: _containers.RepeatedScalarFieldContainer[str]
    default_subnet_size: int
    autolock: bool
    node_cert_expiry: float
    def __init__(self, heartbeat_period: _Optional[float] = ..., node_down_after: _Optional[float] = ..., task_history_limit: _Optional[int] = ..., default_address_pool: _Optional[_Iterable[str]] = ..., default_subnet_size: _Optional[int] = ..., autolock: _Optional[bool] = ..., node_cert_expiry: _Optional[float] = ...) -> None: ...

class RootCA(_message.Message):
    __slots__ = ("cert_pem", "key_pem", "digest", "key_id", "rotation")
    CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ROTATION_FIELD_NUMBER: _ClassVar[int]
    cert_pem: bytes
    key_pem: bytes
    digest: str
    key_id: str
    rotation: RootRotation
    def __init__(self, cert_pem: _Optional[bytes] = ..., key_pem: _Optional[bytes] = ..., digest: _Optional[str] = ..., key_id: _Optional[str] = ..., rotation: _Optional[_Union[RootRotation, _Mapping]] = ...) -> None: ...

class RootRotation(_message.Message):
    __slots__ = ("cert_pem", "key_pem", "digest", "key_id", "cross_signed_pem", "started_at")
    CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    CROSS_SIGNED_PEM_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    cert_pem: bytes
    key_pem: bytes
    digest: str
    key_id: str
    cross_signed_pem: bytes
    started_at: float
    def __init__(self, cert_pem: _Optional[bytes] = ..., key_pem: _Optional[bytes] = ..., digest: _Optional[str] = ..., key_id: _Optional[str] = ..., cross_signed_pem: _Optional[bytes] = ..., started_at: _Optional[float] = ...) -> None: ...

class Cluster(_message.Message):
    __slots__ = ("id", "meta", "spec", "root_ca", "worker_token", "manager_token", "raft_secret", "membership_change", "membership_change_at", "unlock_key", "raft_secret_epoch", "raft_secret_previous", "raft_secret_rotated_at", "raft_secret_rotation", "revoked_certs")
    class RevokedCertsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ROOT_CA_FIELD_NUMBER: _ClassVar[int]
    WORKER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MANAGER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RAFT_SECRET_FIELD_NUMBER: _ClassVar[int]
    MEMBERSHIP_CHANGE_FIELD_NUMBER: _ClassVar[int]
    MEMBERSHIP_CHANGE_AT_FIELD_NUMBER: _ClassVar[int]
    UNLOCK_KEY_FIELD_NUMBER: _ClassVar[int]
    RAFT_SECRET_EPOCH_FIELD_NUMBER: _ClassVar[int]
    RAFT_SECRET_PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    RAFT_SECRET_ROTATED_AT_FIELD_NUMBER: _ClassVar[int]
    RAFT_SECRET_ROTATION_FIELD_NUMBER: _ClassVar[int]
    REVOKED_CERTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    meta: Meta
    spec: ClusterSpec
    root_ca: RootCA
    worker_token: str
    manager_token: str
    raft_secret: bytes
    membership_change: str
    membership_change_at: float
    unlock_key: str
    raft_secret_epoch: int
    raft_secret_previous: bytes
    raft_secret_rotated_at: float
    raft_secret_rotation: str
    revoked_certs: _containers.ScalarMap[str, float]
    def __init__(self, id: _Optional[str] = ..., meta: _Optional[_Union[Meta, _Mapping]] = ..., spec: _Optional[_Union[ClusterSpec, _Mapping]] = ..., root_ca: _Optional[_Union[RootCA, _Mapping]] = ..., worker_token: _Optional[str] = ..., manager_token: _Optional[str] = ..., raft_secret: _Optional[bytes] = ..., membership_change: _Optional[str] = ..., membership_change_at: _Optional[float] = ..., unlock_key: _Optional[str] = ..., raft_secret_epoch: _Optional[int] = ..., raft_secret_previous: _Optional[bytes] = ..., raft_secret_rotated_at: _Optional[float] = ..., raft_secret_rotation: _Optional[str] = ..., revoked_certs: _Optional[_Mapping[str, float]] = ...) -> None: ...
