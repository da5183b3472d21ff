"""Batches shared across requests: concurrent transcriptions of one model decode together.

faster-whisper's `BatchedInferencePipeline` batches the 30-second chunks of one
file: the GPU is busiest with a full batch, and a short file or the tail of a
long one leaves it part empty. When several requests run at once
(``ASR_MAX_CONCURRENT`` > 1), `SharedBatches` joins their batches: each request
keeps its own pipeline (VAD, features, segments, in its own thread), but the
pipeline's ``forward`` — encode and generate for a batch of chunks — goes
through one combiner per model. The first caller waits a few milliseconds for
others, then runs one ``forward`` over the chunks of every compatible waiting
call (same language, task and decoding options, up to the batch size) and hands
each its own results; callers that did not fit go in the next batch.

Only calls that cannot affect each other are joined: word timestamps carry
state across a request's batches (``last_speech_timestamp``), so such calls
always run alone. Results are the same as decoding alone: each chunk is decoded
independently within a batch either way.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from faster_whisper import BatchedInferencePipeline


@dataclass(eq=False)
class _Call:
    pipeline: SharingPipeline
    features: np.ndarray
    tokenizer: object
    chunks_metadata: list
    options: object
    done: threading.Event = field(default_factory=threading.Event)
    result: list | None = None
    error: BaseException | None = None

    def joins(self, other: _Call) -> bool:
        return (
            not self.options.word_timestamps
            and self.tokenizer.language_code == other.tokenizer.language_code
            and self.tokenizer.task == other.tokenizer.task
            and _decoding(self.options) == _decoding(other.options)
        )


def _decoding(options):
    """The options that shape decoding: the speech regions VAD found (``clip_timestamps``) are each request's own."""
    return dataclasses.replace(options, clip_timestamps=None)


class SharedBatches:
    """The combiner of one model: at most one batch runs at a time, made of every waiting call that fits."""

    def __init__(self, gather_seconds: float = 0.01):
        self.gather_seconds = gather_seconds
        self._lock = threading.Lock()
        self._waiting: list[_Call] = []
        self._leading = False
        self.batches = 0  # forward runs, and the calls they served: calls > batches means batches were shared
        self.calls = 0

    def forward(self, call: _Call) -> list:
        with self._lock:
            self._waiting.append(call)
        while not call.done.is_set():
            with self._lock:
                lead = not self._leading
                self._leading = True
            if not lead:
                call.done.wait(timeout=0.02)  # served by the leader's batch, or lead the next one
                continue
            try:
                time.sleep(self.gather_seconds)  # let calls arriving at the same moment join
                with self._lock:
                    group = self._take_group()
                self._run(group)
            finally:
                with self._lock:
                    self._leading = False
        if call.error is not None:
            raise call.error
        return call.result

    def _take_group(self) -> list[_Call]:
        first = self._waiting[0]
        limit = max(first.pipeline.batch_limit, len(first.features))
        group, size = [first], len(first.features)
        for other in self._waiting[1:]:
            if first.joins(other) and size + len(other.features) <= limit:
                group.append(other)
                size += len(other.features)
        for call in group:
            self._waiting.remove(call)
        return group

    def _run(self, group: list[_Call]) -> None:
        first = group[0]
        try:
            features = np.concatenate([c.features for c in group]) if len(group) > 1 else first.features
            metadata = [m for c in group for m in c.chunks_metadata]
            outputs = BatchedInferencePipeline.forward(first.pipeline, features, first.tokenizer, metadata, first.options)
            start = 0
            for call in group:
                call.result = outputs[start : start + len(call.features)]
                start += len(call.features)
        except BaseException as exc:  # noqa: BLE001 - every caller of the batch gets it
            for call in group:
                call.error = exc
        finally:
            self.batches += 1
            self.calls += len(group)
            for call in group:
                call.done.set()


class SharingPipeline(BatchedInferencePipeline):
    """One request's batched pipeline whose batches may carry other requests' chunks too."""

    def __init__(self, model, shared: SharedBatches, batch_limit: int):
        super().__init__(model)
        self.shared = shared
        self.batch_limit = batch_limit

    def forward(self, features, tokenizer, chunks_metadata, options):
        return self.shared.forward(_Call(self, features, tokenizer, chunks_metadata, options))


_creating = threading.Lock()


def pipeline_for(model, batch_size: int) -> SharingPipeline:
    """A pipeline for one request, sharing batches with the model's other requests."""
    with _creating:
        shared = getattr(model, "_shared_batches", None)
        if shared is None:
            shared = model._shared_batches = SharedBatches()
    return SharingPipeline(model, shared, batch_size)
