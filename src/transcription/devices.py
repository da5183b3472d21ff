"""What accelerator a model-holding service has and uses, for the DeviceInfo RPCs and /gpu.

CUDA devices are counted by CTranslate2 when it is installed (the ASR service,
which then never imports torch just to ask), else by torch (the diarizer).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

from transcription.v1 import common_pb2


def cuda_device_count() -> int:
    if importlib.util.find_spec("ctranslate2") is not None:
        import ctranslate2

        return ctranslate2.get_cuda_device_count()
    if importlib.util.find_spec("torch") is not None:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    return 0


def device_info(device: str, compute_type: str = "") -> common_pb2.DeviceInfo:
    """``device`` is what the service runs on (``cpu``, ``cuda``, ``cuda:1``), not merely what the host has."""
    info = common_pb2.DeviceInfo(device=device, compute_type=compute_type)
    count = cuda_device_count()
    if not count:
        return info
    info.gpu_available = True
    info.gpu_count = count
    index = int(device.partition(":")[2] or 0) if device.startswith("cuda") else 0
    torch = sys.modules.get("torch")  # only where the service already uses it
    if torch is not None and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(index)
        info.gpu_name = torch.cuda.get_device_name(index)
        info.gpu_memory_total_bytes, info.gpu_memory_free_bytes = total, free
        info.cuda_version = torch.version.cuda or ""
    elif shutil.which("nvidia-smi"):
        _fill_from_nvidia_smi(info, index)
    return info


def _fill_from_nvidia_smi(info: common_pb2.DeviceInfo, index: int) -> None:
    query = ["nvidia-smi", f"--id={index}", "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"]
    try:
        name, total, free = subprocess.run(query, capture_output=True, text=True, timeout=5, check=True).stdout.strip().split(", ")
        info.gpu_name = name
        info.gpu_memory_total_bytes, info.gpu_memory_free_bytes = int(total) * 2**20, int(free) * 2**20
    except (OSError, subprocess.SubprocessError, ValueError):
        pass  # the count alone is still true


def pick_device(requested: str) -> str:
    """``auto`` becomes ``cuda`` when a GPU is visible, else ``cpu``."""
    if requested == "auto":
        return "cuda" if cuda_device_count() else "cpu"
    return requested
