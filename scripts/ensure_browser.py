#!/usr/bin/env python3
"""Make sure Debian's Chromium is present for the browser tests (Playwright's own download fails
offline). Installs it with apt-get when running as root; otherwise says what to do."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

CHROMIUM = os.environ.get("PROMPTMIX_CHROMIUM", "/usr/bin/chromium")


def main() -> int:
    if os.path.exists(CHROMIUM):
        return 0
    if shutil.which("apt-get") and os.geteuid() == 0:
        print("[browser] installing Debian's chromium for the browser tests", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=False, env=env)
        rc = subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env).returncode
        if rc == 0 and os.path.exists(CHROMIUM):
            return 0
    msg = f"[browser] {CHROMIUM} not found: install Debian's chromium (apt-get install chromium)"
    print(msg, file=sys.stderr)
    # In CI the browser tests must run, so a missing browser is an error there.
    return 1 if os.environ.get("CI") else 0


if __name__ == "__main__":
    sys.exit(main())
