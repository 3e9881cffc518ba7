"""Data-parallel training entry point for ``torchrun``.

    torchrun --standalone --nproc_per_node 2 -m promptmix_core.training.ddp_entry --config cfg.json

``cfg.json``::

    {"train": {TrainConfig fields},
     "labels": ["class a", "class b", ...],            # optional: default, sorted training labels
     "train_data": [{"text": ..., "label": ...}, ...]  # or a path to a CSV/JSONL text,label file
     "val_data": [...] or "val.csv",                   # optional
     "out_dir": "models/run1",                         # optional: save the model (rank 0)
     "store": "project.pmx", "run_id": 3, "job_id": 7, # optional: log metrics/status (rank 0)
     "result_path": "result.json"}                     # optional: rank 0 writes the TrainResult

The process group uses gloo on CPU and nccl on CUDA. Every rank runs the same :func:`train`; a
``DistributedSampler`` shards each epoch, and only rank 0 logs, evaluates and saves. The batch size
is per process. Without torchrun (no ``WORLD_SIZE``) it simply trains in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence


def _rows(spec: Any) -> list[dict[str, str]]:
    if spec is None:
        return []
    if isinstance(spec, list):
        return [{"text": str(r["text"]), "label": str(r["label"])} for r in spec]
    from .jobs import _read_labelled

    return _read_labelled(spec)


def run_from_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    import torch
    import torch.distributed as dist

    from .trainer import train

    world = int(os.environ.get("WORLD_SIZE", "1"))
    started = False
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and cfg.get("train", {}).get("device", "auto") in ("auto", "cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
        started = True
    try:
        rank = dist.get_rank() if dist.is_initialized() else 0
        train_rows = _rows(cfg.get("train_data"))
        val_rows = _rows(cfg.get("val_data"))
        store = None
        if rank == 0 and cfg.get("store") and cfg.get("run_id") is not None:
            from ..store import ProjectStore

            store = ProjectStore(cfg["store"], create=False)
        should_stop = None
        if store is not None and cfg.get("job_id") is not None:
            job_id = int(cfg["job_id"])
            should_stop = lambda: store.cancel_requested(job_id)  # noqa: E731
        result = train(
            cfg.get("train") or {},
            [r["text"] for r in train_rows],
            [r["label"] for r in train_rows],
            label_names=cfg.get("labels"),
            val_texts=[r["text"] for r in val_rows] or None,
            val_labels=[r["label"] for r in val_rows] or None,
            out_dir=cfg.get("out_dir"),
            store=store,
            run_id=cfg.get("run_id"),
            job_id=cfg.get("job_id"),
            should_stop=should_stop,
            keep_model=False,
        )
        out = result.to_dict()
        if rank == 0 and cfg.get("result_path"):
            Path(cfg["result_path"]).write_text(json.dumps(out, indent=2, default=str), "utf-8")
        return out
    finally:
        if started:
            dist.destroy_process_group()


def torchrun_command(config_path: str | Path, nproc: int = 2) -> list[str]:
    """The command line that runs :mod:`ddp_entry` on ``nproc`` local processes."""
    torchrun = Path(sys.executable).with_name("torchrun")
    launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    return [*launcher, "--standalone", f"--nproc_per_node={nproc}", "-m",
            "promptmix_core.training.ddp_entry", "--config", str(config_path)]


def launch(config: Mapping[str, Any], workdir: str | Path, *, nproc: int = 2, timeout: float | None = None,
           env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Write ``config`` to ``workdir`` and train with ``nproc`` processes; returns rank 0's result."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = dict(config)
    cfg.setdefault("result_path", str(workdir / "result.json"))
    cfg_path = workdir / "ddp_config.json"
    cfg_path.write_text(json.dumps(cfg), "utf-8")
    run_env = {**os.environ, **(env or {})}
    run_env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run(torchrun_command(cfg_path, nproc), env=run_env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"distributed training failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(Path(cfg["result_path"]).read_text("utf-8"))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m promptmix_core.training.ddp_entry",
                                 description="Data-parallel fine-tuning (run under torchrun).")
    ap.add_argument("--config", required=True, help="JSON file (see the module docstring)")
    args = ap.parse_args(argv)
    try:
        cfg = json.loads(Path(args.config).read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        print(f"error: cannot read {args.config}: {exc}", file=sys.stderr)
        return 2
    out = run_from_config(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        keys = ("status", "steps", "world_size", "train_loss", "model_dir")
        print(json.dumps({k: out.get(k) for k in keys}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
