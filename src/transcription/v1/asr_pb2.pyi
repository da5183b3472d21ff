from transcription.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Backend(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BACKEND_UNSPECIFIED: _ClassVar[Backend]
    BACKEND_FASTER_WHISPER: _ClassVar[Backend]
    BACKEND_OPENAI_WHISPER: _ClassVar[Backend]
    BACKEND_DEEPGRAM: _ClassVar[Backend]

class Task(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_UNSPECIFIED: _ClassVar[Task]
    TASK_TRANSCRIBE: _ClassVar[Task]
    TASK_TRANSLATE: _ClassVar[Task]
BACKEND_UNSPECIFIED: Backend
BACKEND_FASTER_WHISPER: Backend
BACKEND_OPENAI_WHISPER: Backend
BACKEND_DEEPGRAM: Backend
TASK_UNSPECIFIED: Task
TASK_TRANSCRIBE: Task
TASK_TRANSLATE: Task

class TranscribeOptions(_message.Message):
    __slots__ = ("backend", "model", "language", "task", "beam_size", "vad_filter", "word_timestamps", "initial_prompt", "diarize", "batch_size", "temperatures", "hotwords", "vad")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    BEAM_SIZE_FIELD_NUMBER: _ClassVar[int]
    VAD_FILTER_FIELD_NUMBER: _ClassVar[int]
    WORD_TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_PROMPT_FIELD_NUMBER: _ClassVar[int]
    DIARIZE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURES_FIELD_NUMBER: _ClassVar[int]
    HOTWORDS_FIELD_NUMBER: _ClassVar[int]
    VAD_FIELD_NUMBER: _ClassVar[int]
    backend: Backend
    model: str
    language: str
    task: Task
    beam_size: int
    vad_filter: bool
    word_timestamps: bool
    initial_prompt: str
    diarize: bool
    batch_size: int
    temperatures: _containers.RepeatedScalarFieldContainer[float]
    hotwords: str
    vad: VadParameters
    def __init__(self, backend: _Optional[_Union[Backend, str]] = ..., model: _Optional[str] = ..., language: _Optional[str] = ..., task: _Optional[_Union[Task, str]] = ..., beam_size: _Optional[int] = ..., vad_filter: _Optional[bool] = ..., word_timestamps: _Optional[bool] = ..., initial_prompt: _Optional[str] = ..., diarize: _Optional[bool] = ..., batch_size: _Optional[int] = ..., temperatures: _Optional[_Iterable[float]] = ..., hotwords: _Optional[str] = ..., vad: _Optional[_Union[VadParameters, _Mapping]] = ...) -> None: ...

class VadParameters(_message.Message):
    __slots__ = ("threshold", "min_silence_duration_ms", "speech_pad_ms", "min_speech_duration_ms", "max_speech_duration_s")
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MIN_SILENCE_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    SPEECH_PAD_MS_FIELD_NUMBER: _ClassVar[int]
    MIN_SPEECH_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_SPEECH_DURATION_S_FIELD_NUMBER: _ClassVar[int]
    threshold: float
    min_silence_duration_ms: int
    speech_pad_ms: int
    min_speech_duration_ms: int
    max_speech_duration_s: float
    def __init__(self, threshold: _Optional[float] = ..., min_silence_duration_ms: _Optional[int] = ..., speech_pad_ms: _Optional[int] = ..., min_speech_duration_ms: _Optional[int] = ..., max_speech_duration_s: _Optional[float] = ...) -> None: ...

class TranscribeRequest(_message.Message):
    __slots__ = ("audio", "options", "request_id", "skip_cache", "start_seconds", "end_seconds")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SKIP_CACHE_FIELD_NUMBER: _ClassVar[int]
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    audio: _common_pb2.AudioRef
    options: TranscribeOptions
    request_id: str
    skip_cache: bool
    start_seconds: float
    end_seconds: float
    def __init__(self, audio: _Optional[_Union[_common_pb2.AudioRef, _Mapping]] = ..., options: _Optional[_Union[TranscribeOptions, _Mapping]] = ..., request_id: _Optional[str] = ..., skip_cache: _Optional[bool] = ..., start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ...) -> None: ...

class TranscribeEvent(_message.Message):
    __slots__ = ("started", "progress", "segment", "completed", "queued")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    started: TranscriptionStarted
    progress: TranscriptionProgress
    segment: Segment
    completed: TranscriptionCompleted
    queued: QueuePosition
    def __init__(self, started: _Optional[_Union[TranscriptionStarted, _Mapping]] = ..., progress: _Optional[_Union[TranscriptionProgress, _Mapping]] = ..., segment: _Optional[_Union[Segment, _Mapping]] = ..., completed: _Optional[_Union[TranscriptionCompleted, _Mapping]] = ..., queued: _Optional[_Union[QueuePosition, _Mapping]] = ...) -> None: ...

class QueuePosition(_message.Message):
    __slots__ = ("position", "estimated_wait_seconds")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    position: int
    estimated_wait_seconds: float
    def __init__(self, position: _Optional[int] = ..., estimated_wait_seconds: _Optional[float] = ...) -> None: ...

class TranscriptionStarted(_message.Message):
    __slots__ = ("language", "language_probability", "language_detected", "duration_seconds", "model", "backend")
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_DETECTED_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    language: str
    language_probability: float
    language_detected: bool
    duration_seconds: float
    model: str
    backend: Backend
    def __init__(self, language: _Optional[str] = ..., language_probability: _Optional[float] = ..., language_detected: _Optional[bool] = ..., duration_seconds: _Optional[float] = ..., model: _Optional[str] = ..., backend: _Optional[_Union[Backend, str]] = ...) -> None: ...

class TranscriptionProgress(_message.Message):
    __slots__ = ("processed_seconds", "total_seconds")
    PROCESSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    processed_seconds: float
    total_seconds: float
    def __init__(self, processed_seconds: _Optional[float] = ..., total_seconds: _Optional[float] = ...) -> None: ...

class Word(_message.Message):
    __slots__ = ("start", "end", "word", "probability")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    WORD_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    start: float
    end: float
    word: str
    probability: float
    def __init__(self, start: _Optional[float] = ..., end: _Optional[float] = ..., word: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class Segment(_message.Message):
    __slots__ = ("index", "start", "end", "text", "words", "avg_logprob", "no_speech_prob", "compression_ratio", "speaker")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    AVG_LOGPROB_FIELD_NUMBER: _ClassVar[int]
    NO_SPEECH_PROB_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_RATIO_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    index: int
    start: float
    end: float
    text: str
    words: _containers.RepeatedCompositeFieldContainer[Word]
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    speaker: str
    def __init__(self, index: _Optional[int] = ..., start: _Optional[float] = ..., end: _Optional[float] = ..., text: _Optional[str] = ..., words: _Optional[_Iterable[_Union[Word, _Mapping]]] = ..., avg_logprob: _Optional[float] = ..., no_speech_prob: _Optional[float] = ..., compression_ratio: _Optional[float] = ..., speaker: _Optional[str] = ...) -> None: ...

class TranscriptionCompleted(_message.Message):
    __slots__ = ("segment_count", "from_cache", "processing_seconds", "audio_seconds", "language")
    SEGMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    FROM_CACHE_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    segment_count: int
    from_cache: bool
    processing_seconds: float
    audio_seconds: float
    language: str
    def __init__(self, segment_count: _Optional[int] = ..., from_cache: _Optional[bool] = ..., processing_seconds: _Optional[float] = ..., audio_seconds: _Optional[float] = ..., language: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "backend", "available", "loaded", "source", "multilingual", "languages", "size_bytes", "device", "users")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MULTILINGUAL_FIELD_NUMBER: _ClassVar[int]
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    backend: Backend
    available: bool
    loaded: bool
    source: str
    multilingual: bool
    languages: _containers.RepeatedScalarFieldContainer[str]
    size_bytes: int
    device: str
    users: int
    def __init__(self, name: _Optional[str] = ..., backend: _Optional[_Union[Backend, str]] = ..., available: _Optional[bool] = ..., loaded: _Optional[bool] = ..., source: _Optional[str] = ..., multilingual: _Optional[bool] = ..., languages: _Optional[_Iterable[str]] = ..., size_bytes: _Optional[int] = ..., device: _Optional[str] = ..., users: _Optional[int] = ...) -> None: ...

class ModelRequest(_message.Message):
    __slots__ = ("name", "backend")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    name: str
    backend: Backend
    def __init__(self, name: _Optional[str] = ..., backend: _Optional[_Union[Backend, str]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "default_model")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    default_model: str
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., default_model: _Optional[str] = ...) -> None: ...
