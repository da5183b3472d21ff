"""The CUDA check: the ASR and diarizer benchmarks on a GPU, written to bench/RESULTS-gpu.md.

    make gpu-check        # on a machine with an NVIDIA GPU; CI never runs it

Fails at once, saying why, when CTranslate2 or torch sees no CUDA device.
Figures: faster-whisper float16 sequential and batched, openai-whisper fp16
(bench/asr.py), and the diarizer's DER and speed on CUDA (bench/der.py).
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import asr  # noqa: E402  (bench/ is on sys.path when this runs from it)
import der  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "RESULTS-gpu.md"


def main() -> int:
    import ctranslate2
    import torch

    if ctranslate2.get_cuda_device_count() == 0 or not torch.cuda.is_available():
        print("no CUDA device visible to CTranslate2 and torch: nothing to check here", file=sys.stderr)
        return 1
    os.environ.setdefault("ASR_DEVICE", "cuda")
    os.environ.setdefault("DIARIZER_DEVICE", "cuda")
    gpu = torch.cuda.get_device_name(0)
    lines = [
        "# GPU results",
        "",
        f"Written by `make gpu-check` on {gpu}, {platform.machine()}, torch {torch.__version__}, CTranslate2 {ctranslate2.__version__}.",
        "",
        "ASR engines on the AMI join (120 s), greedy, language given:",
        "",
        *asr.markdown(asr.measure()),
        "",
        "Diarization (bundled pipeline) on CUDA:",
        "",
        *der.markdown(der.measure()),
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
