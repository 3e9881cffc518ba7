"""The server's weight type: bfloat16 where the CPU multiplies it natively, else float32."""

from __future__ import annotations

from pathlib import Path


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX; Linux ``/proc/cpuinfo``)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def model_dtype(want: str | None = "auto") -> str:
    """The server's weights (``--dtype``, from ``$PROMPTMIX_LOCAL_DTYPE``): ``float32``, ``bfloat16`` or
    ``auto`` (the default), which is bfloat16 where the CPU has native bfloat16 (a 16-row step 69 ms
    against 116 ms, docs/LOCAL_MODEL.md), else float32 (emulated bfloat16 would be slower)."""
    want = (want or "auto").strip().lower()
    if want not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"PROMPTMIX_LOCAL_DTYPE must be auto, float32 or bfloat16 (got {want!r})")
    if want == "auto":
        return "bfloat16" if cpu_has_bf16() else "float32"
    return want
