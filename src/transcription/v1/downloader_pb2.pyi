from transcription.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FetchMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FETCH_METHOD_AUTO: _ClassVar[FetchMethod]
    FETCH_METHOD_DIRECT: _ClassVar[FetchMethod]
    FETCH_METHOD_YTDLP: _ClassVar[FetchMethod]

class AudioForm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_FORM_ORIGINAL: _ClassVar[AudioForm]
    AUDIO_FORM_CANONICAL: _ClassVar[AudioForm]
FETCH_METHOD_AUTO: FetchMethod
FETCH_METHOD_DIRECT: FetchMethod
FETCH_METHOD_YTDLP: FetchMethod
AUDIO_FORM_ORIGINAL: AudioForm
AUDIO_FORM_CANONICAL: AudioForm

class FetchRequest(_message.Message):
    __slots__ = ("url", "force_refresh", "method")
    URL_FIELD_NUMBER: _ClassVar[int]
    FORCE_REFRESH_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    url: str
    force_refresh: bool
    method: FetchMethod
    def __init__(self, url: _Optional[str] = ..., force_refresh: _Optional[bool] = ..., method: _Optional[_Union[FetchMethod, str]] = ...) -> None: ...

class FetchEvent(_message.Message):
    __slots__ = ("progress", "cache_hit", "metadata", "ready")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    progress: DownloadProgress
    cache_hit: CacheHit
    metadata: MediaMetadata
    ready: AudioReady
    def __init__(self, progress: _Optional[_Union[DownloadProgress, _Mapping]] = ..., cache_hit: _Optional[_Union[CacheHit, _Mapping]] = ..., metadata: _Optional[_Union[MediaMetadata, _Mapping]] = ..., ready: _Optional[_Union[AudioReady, _Mapping]] = ...) -> None: ...

class DownloadProgress(_message.Message):
    __slots__ = ("bytes_done", "bytes_total", "percent")
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    bytes_done: int
    bytes_total: int
    percent: float
    def __init__(self, bytes_done: _Optional[int] = ..., bytes_total: _Optional[int] = ..., percent: _Optional[float] = ...) -> None: ...

class CacheHit(_message.Message):
    __slots__ = ("url", "content_id")
    URL_FIELD_NUMBER: _ClassVar[int]
    CONTENT_ID_FIELD_NUMBER: _ClassVar[int]
    url: str
    content_id: str
    def __init__(self, url: _Optional[str] = ..., content_id: _Optional[str] = ...) -> None: ...

class MediaMetadata(_message.Message):
    __slots__ = ("title", "duration_seconds", "thumbnail_url", "uploader", "view_count", "upload_date", "description", "webpage_url", "extractor")
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_URL_FIELD_NUMBER: _ClassVar[int]
    UPLOADER_FIELD_NUMBER: _ClassVar[int]
    VIEW_COUNT_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_DATE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    WEBPAGE_URL_FIELD_NUMBER: _ClassVar[int]
    EXTRACTOR_FIELD_NUMBER: _ClassVar[int]
    title: str
    duration_seconds: float
    thumbnail_url: str
    uploader: str
    view_count: int
    upload_date: str
    description: str
    webpage_url: str
    extractor: str
    def __init__(self, title: _Optional[str] = ..., duration_seconds: _Optional[float] = ..., thumbnail_url: _Optional[str] = ..., uploader: _Optional[str] = ..., view_count: _Optional[int] = ..., upload_date: _Optional[str] = ..., description: _Optional[str] = ..., webpage_url: _Optional[str] = ..., extractor: _Optional[str] = ...) -> None: ...

class AudioReady(_message.Message):
    __slots__ = ("content_id", "duration_seconds", "size_bytes", "format", "from_cache", "canonical_size_bytes")
    CONTENT_ID_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    FROM_CACHE_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    content_id: str
    duration_seconds: float
    size_bytes: int
    format: str
    from_cache: bool
    canonical_size_bytes: int
    def __init__(self, content_id: _Optional[str] = ..., duration_seconds: _Optional[float] = ..., size_bytes: _Optional[int] = ..., format: _Optional[str] = ..., from_cache: _Optional[bool] = ..., canonical_size_bytes: _Optional[int] = ...) -> None: ...

class ReadAudioRequest(_message.Message):
    __slots__ = ("content_id", "offset", "length", "chunk_size", "form", "start_seconds", "end_seconds")
    CONTENT_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    FORM_FIELD_NUMBER: _ClassVar[int]
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    content_id: str
    offset: int
    length: int
    chunk_size: int
    form: AudioForm
    start_seconds: float
    end_seconds: float
    def __init__(self, content_id: _Optional[str] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., chunk_size: _Optional[int] = ..., form: _Optional[_Union[AudioForm, str]] = ..., start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ...) -> None: ...

class AudioChunk(_message.Message):
    __slots__ = ("data", "offset", "total_size")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    total_size: int
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ..., total_size: _Optional[int] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("filename", "data")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    filename: str
    data: bytes
    def __init__(self, filename: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class VideoInfoRequest(_message.Message):
    __slots__ = ("url",)
    URL_FIELD_NUMBER: _ClassVar[int]
    url: str
    def __init__(self, url: _Optional[str] = ...) -> None: ...
