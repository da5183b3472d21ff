"""Resemblyzer's GE2E speaker encoder as a pyannote.audio speaker-embedding model.

pyannote's SpeakerDiarization pipeline extracts one embedding per (chunk, local
speaker) by calling ``model(waveforms, weights=masks)``: ``waveforms`` is the
whole chunk (batch, 1, samples) and ``masks`` (batch, frames) marks, at the
segmentation model's frame rate, where that local speaker is active. Its own
embedding models use the mask as weights of a statistics-pooling layer.

GE2E has no pooling layer: an LSTM reads a sequence of mel frames and its last
hidden state is the embedding. So the mask selects frames instead: the mel
frames where the speaker is active are concatenated, which is how Resemblyzer
itself prepares an utterance (it cuts silences out with a VAD before
embedding). The rest follows Resemblyzer's recipe: raise the volume of quiet
speech to -30 dBFS, cut the frames into 1.6 s partials, embed each partial and
average the L2-normalised embeddings.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio.functional
from pyannote.audio import Model
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from transcription.audio import SAMPLE_RATE

N_FFT = 400  # 25 ms window
HOP = 160  # 10 ms step
N_MELS = 40
HIDDEN = 256
EMBEDDING_DIM = 256
NUM_LAYERS = 3

PARTIAL_FRAMES = 160  # 1.6 s, the length GE2E was trained on
# Resemblyzer takes 1.3 partials per second of speech.
PARTIAL_STEP = round(SAMPLE_RATE / 1.3 / HOP)

# Resemblyzer's normalize_volume(..., -30 dBFS, increase_only=True); features are
# linear (not log) mel power, so loudness matters to the LSTM.
TARGET_RMS = 10 ** (-30 / 20)
MIN_RMS = 1e-5  # keeps digital silence from being amplified to infinity

# Shortest speech (in mel frames) worth an embedding. Below it the LSTM output is
# mostly noise: such masks give NaN, which pyannote's clustering ignores.
MIN_SPEECH_FRAMES = 20  # 200 ms
MIN_NUM_SAMPLES = MIN_SPEECH_FRAMES * HOP


class GE2ESpeakerEmbedding(Model):
    """256-dimensional GE2E speaker embeddings, usable as pyannote's ``embedding=``."""

    def __init__(self, sample_rate: int = SAMPLE_RATE, num_channels: int = 1):
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"GE2E encoder works at {SAMPLE_RATE} Hz, not {sample_rate} Hz")
        super().__init__(sample_rate=sample_rate, num_channels=num_channels)

        self.lstm = nn.LSTM(N_MELS, HIDDEN, NUM_LAYERS, batch_first=True)
        self.linear = nn.Linear(HIDDEN, EMBEDDING_DIM)

        # librosa's default filterbank (Slaney scale and norm), which Resemblyzer used.
        mel_fbank = torchaudio.functional.melscale_fbanks(
            n_freqs=N_FFT // 2 + 1,
            f_min=0.0,
            f_max=SAMPLE_RATE / 2,
            n_mels=N_MELS,
            sample_rate=SAMPLE_RATE,
            norm="slaney",
            mel_scale="slaney",
        )
        self.register_buffer("mel_fbank", mel_fbank, persistent=False)
        # scipy's "hann" with fftbins=True, i.e. the periodic window librosa uses.
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)

    @classmethod
    def from_checkpoint(cls, path: Path | str) -> GE2ESpeakerEmbedding:
        """Load Resemblyzer's ``pretrained.pt`` (tensors only, no pickled code)."""
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state = {
            name: tensor
            for name, tensor in checkpoint["model_state"].items()
            # similarity_{weight,bias} only served the training loss
            if name.startswith(("lstm.", "linear."))
        }
        model = cls()
        model.load_state_dict(state, strict=False)
        missing = set(model.state_dict()) - set(state)
        if missing:
            raise ValueError(f"{path} lacks GE2E parameters: {sorted(missing)}")
        model.eval()
        return model

    @property
    def dimension(self) -> int:
        return EMBEDDING_DIM

    def mel_frames(self, waveforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mel power spectrogram and per-frame mean square of (batch, samples) audio.

        Returns (batch, frames, N_MELS) and (batch, frames); frame t is centred on
        sample t * HOP, as in librosa's centred STFT.
        """
        spectrum = torch.stft(
            waveforms,
            n_fft=N_FFT,
            hop_length=HOP,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        mel = torch.matmul(spectrum.abs().pow(2).transpose(1, 2), self.mel_fbank)

        # HOP-long blocks centred on each STFT frame, for loudness of selected speech
        padded = F.pad(waveforms, (HOP // 2, HOP // 2))
        mean_square = padded.unfold(-1, HOP, HOP).pow(2).mean(dim=-1)
        return mel, mean_square[:, : mel.shape[1]]

    def forward(self, waveforms: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Embed (batch, 1, samples) waveforms; ``weights`` (batch, frames) marks the speech to use.

        Returns (batch, EMBEDDING_DIM) L2-normalised embeddings; NaN rows where the
        mask selects less than MIN_SPEECH_FRAMES of speech.
        """
        if waveforms.dim() != 3 or waveforms.shape[1] != 1:
            raise ValueError(f"expected (batch, 1, samples) waveforms, got {tuple(waveforms.shape)}")
        # pyannote probes this failure to learn min_num_samples (see PyannoteAudio-
        # PretrainedSpeakerEmbedding), which bounds its exclude_overlap masks.
        if waveforms.shape[-1] < MIN_NUM_SAMPLES:
            raise ValueError(f"need at least {MIN_NUM_SAMPLES} samples, got {waveforms.shape[-1]}")

        mel, mean_square = self.mel_frames(waveforms[:, 0])
        batch_size, num_frames, _ = mel.shape
        if weights is None:
            active = torch.ones(batch_size, num_frames, dtype=torch.bool, device=mel.device)
        else:
            active = self._frame_mask(weights, num_frames)

        speech = [self._louder(m[a], ms[a]) for m, ms, a in zip(mel, mean_square, active)]
        return self._embed_utterances(speech)

    @staticmethod
    def _frame_mask(weights: torch.Tensor, num_frames: int) -> torch.Tensor:
        # nearest-neighbour resampling, as pyannote's StatsPool does with its weights
        resampled = F.interpolate(weights[:, None].float(), size=num_frames, mode="nearest")
        return resampled[:, 0] > 0.5

    @staticmethod
    def _louder(mel: torch.Tensor, mean_square: torch.Tensor) -> torch.Tensor:
        if mel.shape[0] == 0:
            return mel
        rms = mean_square.mean().sqrt().clamp_min(MIN_RMS)
        gain = (TARGET_RMS / rms).clamp_min(1.0)
        return mel * gain**2  # power spectrum scales with amplitude squared

    def _embed_utterances(self, utterances: list[torch.Tensor]) -> torch.Tensor:
        """Embed each (frames, N_MELS) utterance as the mean of its partials' embeddings."""
        partials, owners = [], []
        for index, utterance in enumerate(utterances):
            if utterance.shape[0] < MIN_SPEECH_FRAMES:
                continue
            for start in _partial_starts(utterance.shape[0]):
                partials.append(utterance[start : start + PARTIAL_FRAMES])
                owners.append(index)

        embeddings = torch.full((len(utterances), EMBEDDING_DIM), math.nan, device=self.mel_fbank.device)
        if not partials:
            return embeddings

        partial_embeddings = self._embed_partials(partials)
        owners_t = torch.tensor(owners, device=partial_embeddings.device)
        sums = torch.zeros_like(embeddings).index_add_(0, owners_t, partial_embeddings)
        embedded = torch.unique(owners_t)
        embeddings[embedded] = F.normalize(sums[embedded], dim=-1)
        return embeddings

    def _embed_partials(self, partials: list[torch.Tensor]) -> torch.Tensor:
        lengths = torch.tensor([p.shape[0] for p in partials])
        padded = nn.utils.rnn.pad_sequence(partials, batch_first=True)
        # packing makes the LSTM stop at each partial's own last frame
        packed = pack_padded_sequence(padded, lengths, batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)
        return F.normalize(torch.relu(self.linear(hidden[-1])), dim=-1)


def _partial_starts(num_frames: int) -> list[int]:
    """Starts of PARTIAL_FRAMES-long windows covering num_frames (one shorter window if needed).

    Resemblyzer zero-pads the last partial; ending it flush with the speech
    instead avoids feeding silence to the LSTM right before its output.
    """
    if num_frames <= PARTIAL_FRAMES:
        return [0]
    last = num_frames - PARTIAL_FRAMES
    starts = list(range(0, last, PARTIAL_STEP))
    return starts + [last]
