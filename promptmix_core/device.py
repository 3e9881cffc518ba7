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


def device_info(device: str = "auto") -> dict[str, Any]:
    """What :func:`pick_device` picks, described: ``{"device", "name", "count", "bf16"}``."""
    import torch

    picked = pick_device(device)
    if picked.startswith("cuda"):
        return {"device": "cuda", "name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count(),
                "bf16": bool(torch.cuda.is_bf16_supported())}
    if picked == "mps":
        return {"device": "mps", "name": "Apple GPU (MPS)", "count": 1, "bf16": False}
    return {"device": "cpu", "name": f"CPU ({os.cpu_count()} cores)", "count": 0, "bf16": False}


__all__ = ["DEVICES", "device_info", "pick_device"]
