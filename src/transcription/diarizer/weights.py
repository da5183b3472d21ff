"""The diarization weights that ship inside pip packages.

The default ("bundled") route runs on two files carried by wheels installed with
``--no-deps`` (requirements/diarizer-nodeps.txt):

* ``whisperx/assets/pytorch_model.bin``: the pyannote/segmentation PyanNet checkpoint;
* ``resemblyzer/pretrained.pt``: a GE2E speaker encoder.

Those packages are never imported (they pull heavy or missing dependencies); only
their install folders are located, and each file is checked against its pinned
sha256 before it is loaded (`transcription.bundled`).
"""

from __future__ import annotations

from transcription.bundled import BundledFile

SEGMENTATION = BundledFile.single(
    "whisperx", "assets/pytorch_model.bin", "0b5b3216d60a2d32fc086b47ea8c67589aaeb26b7e07fcbe620d6d0b83e209ea"
)
SPEAKER_ENCODER = BundledFile.single("resemblyzer", "pretrained.pt", "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e")
