#!/usr/bin/env python3
"""Make sure Node.js and ESLint are present for the review card's checks (`make test`).

Node (>= 18, so Debian 12's own nodejs will do) runs the unit tests of the card's outbox logic
(`node --test tests/js/outbox.test.js`) and ESLint (pinned in scripts/jslint/package-lock.json,
installed into scripts/jslint/node_modules, gitignored).
Installs Debian's nodejs and npm with apt-get when running as root and they are missing; otherwise
says what to do. With ``--lint`` it then runs ESLint on app_pages/review_card/ and tests/js/.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = ROOT / "scripts" / "jslint"
ESLINT = LINT / "node_modules" / ".bin" / "eslint"
STAMP = LINT / "node_modules" / ".installed-lock"
LINTED = ["app_pages/review_card/", "tests/js/"]


def node_major() -> int | None:
    node = shutil.which("node")
    if not node:
        return None
    out = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    try:
        return int(out.lstrip("v").split(".")[0])
    except ValueError:
        return None


def ensure_node() -> bool:
    if (node_major() or 0) >= 18 and shutil.which("npm"):
        return True
    if shutil.which("apt-get") and os.geteuid() == 0:
        print("[js] installing Debian's nodejs and npm for the review card's checks", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", "nodejs", "npm"], check=False, env=env)
    if (node_major() or 0) >= 18 and shutil.which("npm"):
        return True
    print("[js] Node.js >= 18 with npm not found: install it (apt-get install nodejs npm)", file=sys.stderr)
    return False


def ensure_eslint() -> bool:
    lock = (LINT / "package-lock.json").read_text("utf-8")
    if ESLINT.exists() and STAMP.exists() and STAMP.read_text("utf-8") == lock:
        return True
    print("[js] installing ESLint (npm ci in scripts/jslint)", flush=True)
    rc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=LINT).returncode
    if rc != 0 or not ESLINT.exists():
        print("[js] npm ci failed: ESLint is not installed", file=sys.stderr)
        return False
    STAMP.write_text(lock, "utf-8")
    return True


def lint() -> int:
    return subprocess.run([str(ESLINT), "--max-warnings=0", "-c", str(LINT / "eslint.config.js"), *LINTED],
                          cwd=ROOT).returncode


def main(argv: list[str]) -> int:
    if not ensure_node() or not ensure_eslint():
        return 1
    if "--lint" in argv:
        rc = lint()
        print("[js] ESLint: no problems" if rc == 0 else "[js] ESLint found problems (above)", flush=True)
        return rc
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
