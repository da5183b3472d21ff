"""Where to cut a long file so that its pieces can be transcribed at once on several ASR replicas.

A file longer than ``GATEWAY_FANOUT_MIN_SECONDS`` is cut into pieces of about
``GATEWAY_FANOUT_PIECE_SECONDS``. Each cut goes to the quietest moment within a
few seconds of its ideal place, so it falls in a pause between words rather
than through one: no word is lost or heard twice at a join. A piece is decoded
from a few seconds before its cut (`LEAD_IN_SECONDS`); segments centred before
the cut are the previous piece's and are dropped. The quiet is found
in the canonical audio around the cut (a few seconds read with ReadAudio's time
range), in plain Python: the gateway needs no audio library.
"""

from __future__ import annotations

from array import array

SAMPLE_RATE = 16_000
FRAME_SECONDS = 0.03
PAUSE_FRAMES = 10  # 300 ms: the shortest pause worth cutting in
SEARCH_SECONDS = 5.0  # on each side of the ideal cut
# Each piece but the first is decoded from this long before its cut, and what is heard
# there is dropped (it is the previous piece's). The model then starts mid-conversation,
# as in the whole file, rather than cold at the cut, where Whisper tends to loop
# ("Hello. Hello. Hello." for "Hello. Oh, hello.").
LEAD_IN_SECONDS = 5.0


def ideal_cuts(duration: float, piece_seconds: float) -> list[float]:
    """Evenly spaced cut times giving pieces of about ``piece_seconds`` (at least two pieces)."""
    pieces = max(2, round(duration / piece_seconds))
    return [duration * k / pieces for k in range(1, pieces)]


def quietest_moment(pcm: bytes, window_start: float) -> float:
    """The centre (in file time) of the quietest 30-ms frame of 16 kHz s16le ``pcm`` starting at ``window_start``,
    looked for inside its quietest 300 ms: a pause between phrases, not the silent closure of a "t" inside a word."""
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) // 2 * 2])
    frame = int(FRAME_SECONDS * SAMPLE_RATE)
    energies = [sum(map(abs, samples[i : i + frame])) for i in range(0, max(1, len(samples) - frame + 1), frame)]
    span = min(PAUSE_FRAMES, len(energies))
    sums = [sum(energies[i : i + span]) for i in range(len(energies) - span + 1)]
    first = min(range(len(sums)), key=sums.__getitem__)
    best = min(range(first, first + span), key=energies.__getitem__)
    return round(window_start + (best * frame + frame / 2) / SAMPLE_RATE, 3)


def pieces(cuts: list[float]) -> list[tuple[float, float]]:
    """[start, end) of each piece; the last one ends at 0, meaning the end of the file."""
    return list(zip([0.0, *cuts], [*cuts, 0.0]))
