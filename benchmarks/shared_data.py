"""Where the shared data sets are: ``shared/datasets`` beside the checkout, or beside a folder above it
(a git worktree nested deeper). The benchmarks import ``DATASETS`` from here."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATASETS = next((p / "shared" / "datasets" for p in ROOT.parents if (p / "shared" / "datasets").is_dir()),
                ROOT.parent / "shared" / "datasets")
