"""Peak memory of importing a large labelled CSV (``promptmix check FILE --k 10``).

Writes a CSV of about ``--mb`` megabytes (banking77 training rows, each made unique, or synthetic rows
when the shared datasets are not there) to a temporary folder, then runs the CLI in a child process
and reads its peak resident set size from the kernel (``getrusage(RUSAGE_CHILDREN)``). Reports the
peak, its ratio to the file's size, and the same for a bare interpreter that only imports the CLI
(the floor). The file is deleted at the end.

    PYTHONPATH=$PWD nice .venv/bin/python benchmarks/import_memory.py --mb 199.5
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BANKING = ROOT.parent / "shared" / "datasets" / "banking77" / "train.csv"
if not BANKING.exists():
    BANKING = Path("/work/shared/datasets/banking77/train.csv")


def make_csv(path: Path, size: int) -> int:
    if BANKING.exists():
        with open(BANKING, newline="", encoding="utf-8") as fh:
            src = [(r["text"], r["label"]) for r in csv.DictReader(fh)]
    else:
        src = [(f"message about topic {i} and my account", f"class_{i % 77}") for i in range(10_000)]
    rows = 0
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        while fh.tell() < size - 200:
            t, lab = src[rows % len(src)]
            w.writerow([f"{t} (#{rows})", lab])
            rows += 1
    return rows


def peak_rss_of(cmd: list[str]) -> tuple[int, float, str]:
    """Peak RSS (bytes) of one child process, its wall time and its last output line."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    dt = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if after <= before:
        raise SystemExit("run the smallest command first: ru_maxrss is the maximum over all children")
    out = (r.stdout or r.stderr).strip().splitlines()
    return after * 1024, dt, out[0] if out else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=199.5, help="file size in MB (10^6 bytes); the limit is 200")
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.csv"
        rows = make_csv(path, int(args.mb * 1e6))
        size = path.stat().st_size
        # the floor first: ru_maxrss of the children only ever grows
        floor, _, _ = peak_rss_of([sys.executable, "-c", "import promptmix_core.cli, promptmix_core.task"])
        check, dt, said = peak_rss_of([sys.executable, "-m", "promptmix_core.cli", "check", str(path), "--k", str(args.k)])
    print(f"file: {size / 1e6:.1f} MB, {rows:,} rows")
    print(f"promptmix check --k {args.k}: peak RSS {check / 1e6:,.0f} MB = {check / size:.2f}x the file, "
          f"{dt:.1f} s ({said})")
    print(f"interpreter + imports only: peak RSS {floor / 1e6:,.0f} MB")


if __name__ == "__main__":
    main()
