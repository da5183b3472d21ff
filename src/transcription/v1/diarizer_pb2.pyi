from transcription.v1 import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DiarizeOptions(_message.Message):
    __slots__ = ("num_speakers", "min_speakers", "max_speakers")
    NUM_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    MIN_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    MAX_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    num_speakers: int
    min_speakers: int
    max_speakers: int
    def __init__(self, num_speakers: _Optional[int] = ..., min_speakers: _Optional[int] = ..., max_speakers: _Optional[int] = ...) -> None: ...

class DiarizeRequest(_message.Message):
    __slots__ = ("audio", "options", "request_id", "skip_cache")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SKIP_CACHE_FIELD_NUMBER: _ClassVar[int]
    audio: _common_pb2.AudioRef
    options: DiarizeOptions
    request_id: str
    skip_cache: bool
    def __init__(self, audio: _Optional[_Union[_common_pb2.AudioRef, _Mapping]] = ..., options: _Optional[_Union[DiarizeOptions, _Mapping]] = ..., request_id: _Optional[str] = ..., skip_cache: _Optional[bool] = ...) -> None: ...

class DiarizeEvent(_message.Message):
    __slots__ = ("progress", "turn", "completed")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    TURN_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    progress: DiarizationProgress
    turn: SpeakerTurn
    completed: DiarizationCompleted
    def __init__(self, progress: _Optional[_Union[DiarizationProgress, _Mapping]] = ..., turn: _Optional[_Union[SpeakerTurn, _Mapping]] = ..., completed: _Optional[_Union[DiarizationCompleted, _Mapping]] = ...) -> None: ...

class DiarizationProgress(_message.Message):
    __slots__ = ("stage", "percent")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    stage: str
    percent: float
    def __init__(self, stage: _Optional[str] = ..., percent: _Optional[float] = ...) -> None: ...

class SpeakerTurn(_message.Message):
    __slots__ = ("start", "end", "speaker")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    start: float
    end: float
    speaker: str
    def __init__(self, start: _Optional[float] = ..., end: _Optional[float] = ..., speaker: _Optional[str] = ...) -> None: ...

class DiarizationCompleted(_message.Message):
    __slots__ = ("num_speakers", "turn_count", "processing_seconds", "audio_seconds", "from_cache")
    NUM_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    TURN_COUNT_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FROM_CACHE_FIELD_NUMBER: _ClassVar[int]
    num_speakers: int
    turn_count: int
    processing_seconds: float
    audio_seconds: float
    from_cache: bool
    def __init__(self, num_speakers: _Optional[int] = ..., turn_count: _Optional[int] = ..., processing_seconds: _Optional[float] = ..., audio_seconds: _Optional[float] = ..., from_cache: _Optional[bool] = ...) -> None: ...
