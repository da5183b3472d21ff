from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class AudioRef(_message.Message):
    __slots__ = ("content_id", "inline_audio")
    CONTENT_ID_FIELD_NUMBER: _ClassVar[int]
    INLINE_AUDIO_FIELD_NUMBER: _ClassVar[int]
    content_id: str
    inline_audio: bytes
    def __init__(self, content_id: _Optional[str] = ..., inline_audio: _Optional[bytes] = ...) -> None: ...

class DeviceInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeviceInfo(_message.Message):
    __slots__ = ("gpu_available", "gpu_name", "gpu_memory_total_bytes", "gpu_memory_free_bytes", "cuda_version", "device", "gpu_count", "compute_type", "max_concurrent")
    GPU_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    GPU_NAME_FIELD_NUMBER: _ClassVar[int]
    GPU_MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    GPU_MEMORY_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CUDA_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    GPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_TYPE_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_FIELD_NUMBER: _ClassVar[int]
    gpu_available: bool
    gpu_name: str
    gpu_memory_total_bytes: int
    gpu_memory_free_bytes: int
    cuda_version: str
    device: str
    gpu_count: int
    compute_type: str
    max_concurrent: int
    def __init__(self, gpu_available: _Optional[bool] = ..., gpu_name: _Optional[str] = ..., gpu_memory_total_bytes: _Optional[int] = ..., gpu_memory_free_bytes: _Optional[int] = ..., cuda_version: _Optional[str] = ..., device: _Optional[str] = ..., gpu_count: _Optional[int] = ..., compute_type: _Optional[str] = ..., max_concurrent: _Optional[int] = ...) -> None: ...

class CacheStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CacheStats(_message.Message):
    __slots__ = ("total_files", "total_bytes", "metadata_files", "cache_id")
    TOTAL_FILES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    METADATA_FILES_FIELD_NUMBER: _ClassVar[int]
    CACHE_ID_FIELD_NUMBER: _ClassVar[int]
    total_files: int
    total_bytes: int
    metadata_files: int
    cache_id: str
    def __init__(self, total_files: _Optional[int] = ..., total_bytes: _Optional[int] = ..., metadata_files: _Optional[int] = ..., cache_id: _Optional[str] = ...) -> None: ...

class CacheClearRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CacheClearResponse(_message.Message):
    __slots__ = ("files_deleted", "bytes_freed")
    FILES_DELETED_FIELD_NUMBER: _ClassVar[int]
    BYTES_FREED_FIELD_NUMBER: _ClassVar[int]
    files_deleted: int
    bytes_freed: int
    def __init__(self, files_deleted: _Optional[int] = ..., bytes_freed: _Optional[int] = ...) -> None: ...
