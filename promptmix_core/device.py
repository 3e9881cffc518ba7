"""The device probe: which accelerator training uses. One rule for the Train page, the worker,
the trainer and model loading: CUDA, else Apple MPS, else CPU (torch imported only when asked)."""

from __future__ import annotations

import os
from typing import Any

DEVICES = ("auto", "cpu", "cuda", "mps")


def _mps_available(torch: Any) -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def pick_device(device: str = "auto") -> str:
    """"auto": CUDA, else Apple MPS, else CPU. An explicit device that is missing is an error."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if _mps_available(torch):
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available")
    if device == "mps" and not _mps_available(torch):
        raise ValueError("device 'mps' was asked for but Apple MPS is not available")
    return device


# device nodes an accelerator torch could use leaves behind (NVIDIA, ROCm, WSL's GPU bridge)
ACCELERATOR_NODES = ("/dev/nvidia0", "/dev/nvidiactl", "/proc/driver/nvidia", "/dev/kfd", "/dev/dxg")


def no_accelerator() -> bool:
    """True when this machine surely has no device torch could train on (not macOS, no NVIDIA, ROCm
    or WSL GPU device node): then "auto" is the CPU, known without importing torch (seconds)."""
    import sys

    return sys.platform != "darwin" and not any(os.path.exists(p) for p in ACCELERATOR_NODES)


def device_info(device: str = "auto") -> dict[str, Any]:
    """What :func:`pick_device` picks, described: ``{"device", "name", "count", "bf16"}``. On a
    machine without an accelerator (:func:`no_accelerator`) "auto" and "cpu" need no torch import."""
    if (device or "auto").lower() in ("auto", "cpu") and no_accelerator():
        return {"device": "cpu", "name": f"CPU ({os.cpu_count()} cores)", "count": 0, "bf16": False}
    import torch

    picked = pick_device(device)
    if picked.startswith("cuda"):
        return {"device": "cuda", "name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count(),
                "bf16": bool(torch.cuda.is_bf16_supported())}
    if picked == "mps":
        return {"device": "mps", "name": "Apple GPU (MPS)", "count": 1, "bf16": False}
    return {"device": "cpu", "name": f"CPU ({os.cpu_count()} cores)", "count": 0, "bf16": False}


__all__ = ["DEVICES", "device_info", "no_accelerator", "pick_device"]
