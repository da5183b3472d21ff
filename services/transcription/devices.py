"""What accelerator a model-holding service has, for the DeviceInfo RPCs and /gpu."""

from __future__ import annotations

import importlib.util

from transcription.v1 import common_pb2


def cuda_available() -> bool:
    if importlib.util.find_spec("torch") is not None:
        import torch

        return torch.cuda.is_available()
    if importlib.util.find_spec("ctranslate2") is not None:
        import ctranslate2

        return ctranslate2.get_cuda_device_count() > 0
    return False


def device_info(compute_type: str = "") -> common_pb2.DeviceInfo:
    info = common_pb2.DeviceInfo(device="cpu", compute_type=compute_type)
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info(0)
            info.gpu_available = True
            info.device = "cuda"
            info.gpu_count = torch.cuda.device_count()
            info.gpu_name = torch.cuda.get_device_name(0)
            info.gpu_memory_total_bytes = total
            info.gpu_memory_free_bytes = free
            info.cuda_version = torch.version.cuda or ""
        return info
    if importlib.util.find_spec("ctranslate2") is not None:
        import ctranslate2

        count = ctranslate2.get_cuda_device_count()
        if count:
            info.gpu_available = True
            info.device = "cuda"
            info.gpu_count = count
    return info


def pick_device(requested: str) -> str:
    """``auto`` becomes ``cuda`` when a GPU is visible, else ``cpu``."""
    if requested == "auto":
        return "cuda" if cuda_available() else "cpu"
    return requested
