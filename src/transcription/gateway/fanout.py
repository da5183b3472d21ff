"""Where to cut a long file so that its pieces can be transcribed at once on several ASR replicas.

A file longer than ``GATEWAY_FANOUT_MIN_SECONDS`` is cut into pieces of about
``GATEWAY_FANOUT_PIECE_SECONDS``. Each cut goes to the quietest moment within a
few seconds of its ideal place, so it falls in a pause between words rather
than through one: no word is lost or heard twice at a join. The quiet is found
in the canonical audio around the cut (a few seconds read with ReadAudio's time
range), in plain Python: the gateway needs no audio library.
"""

from __future__ import annotations

import math
from array import array

SAMPLE_RATE = 16_000
FRAME_SECONDS = 0.03
SEARCH_SECONDS = 5.0  # on each side of the ideal cut


def ideal_cuts(duration: float, piece_seconds: float) -> list[float]:
    """Evenly spaced cut times giving pieces of about ``piece_seconds`` (at least two pieces)."""
    pieces = max(2, round(duration / piece_seconds))
    return [duration * k / pieces for k in range(1, pieces)]


def quietest_moment(pcm: bytes, window_start: float) -> float:
    """The centre (in file time) of the quietest 30-ms frame of 16 kHz s16le ``pcm`` starting at ``window_start``."""
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) // 2 * 2])
    frame = int(FRAME_SECONDS * SAMPLE_RATE)
    best_energy, best_index = math.inf, 0
    for index in range(0, max(1, len(samples) - frame + 1), frame):
        energy = sum(map(abs, samples[index : index + frame]))
        if energy < best_energy:
            best_energy, best_index = energy, index
    return round(window_start + (best_index + frame / 2) / SAMPLE_RATE, 3)


def pieces(cuts: list[float]) -> list[tuple[float, float]]:
    """[start, end) of each piece; the last one ends at 0, meaning the end of the file."""
    return list(zip([0.0, *cuts], [*cuts, 0.0]))
