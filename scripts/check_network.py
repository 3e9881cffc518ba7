#!/usr/bin/env python3
"""Run by ``make run`` before Streamlit: refuse to serve beyond 127.0.0.1 without sign-in.

Without an ``[auth]`` table in the secrets (``~/.streamlit/secrets.toml``, ``./.streamlit/secrets.toml``
or the files given with ``--secrets``), binding any address but a loopback one is refused with one line
naming the fix, unless ``PROMPTMIX_OPEN_NETWORK=1`` is set. The app makes the same check when it starts.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from promptmix_core.access import access_config, network_refusal, read_secrets, secrets_files  # noqa: E402
from promptmix_core.settings import get_settings  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--address", default="127.0.0.1")
    ap.add_argument("--secrets", action="append", default=[], help="secrets file(s) the app will read")
    args = ap.parse_args(argv)
    files = args.secrets or secrets_files()
    auth = access_config(read_secrets(files)).auth
    reason = network_refusal(args.address, auth=auth, open_network=get_settings().open_network)
    if reason:
        print(f"promptmix: {reason}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
