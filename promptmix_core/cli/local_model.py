"""``promptmix prepare-model`` and ``promptmix serve-local``: the bundled local model (library:
:mod:`promptmix_core.llm.local`)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from typing import Any

from ..llm.local import (BACKENDS, HOST, LocalModelError, LocalServer, LocalServerError, _register_shared,
                         _remove_state_if, _shared_lock_file, _signals_as_interrupt, _state_path, _state_usable,
                         default_model_dir, prepare_model, read_shared_state, server_dir, stop_shared_server)


def _cmd_prepare_model(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    try:
        folder = prepare_model(getattr(args, "cache_dir", None), force=bool(getattr(args, "force", False)))
    except LocalModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(folder)
    print(f"ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


def _cmd_serve_local(args: argparse.Namespace) -> int:
    if getattr(args, "stop", False):
        state = read_shared_state()
        if stop_shared_server():
            print(f"stopped the local model server (pid {state['pid'] if state else '?'})")
        else:
            print("no local model server is running")
        return 0
    with _signals_as_interrupt():
        return _serve_foreground(args)


def _serve_foreground(args: argparse.Namespace) -> int:
    """``serve-local``: run the server until Ctrl-C, SIGTERM or SIGHUP, registered as the shared server
    meanwhile; stopped and unregistered however this ends (its child also exits by itself should this
    process be killed outright: ``orphan_idle=0``)."""
    server: LocalServer | None = None
    registered = False
    try:
        folder = prepare_model(getattr(args, "cache_dir", None))
        server = LocalServer(folder, port=getattr(args, "port", None), threads=getattr(args, "threads", None),
                             backend=getattr(args, "backend", None), orphan_idle=0.0, state_file=_state_path())
        print(f"starting the local model server on {HOST} (log {server_dir()}) ...", file=sys.stderr, flush=True)
        server.start()
        with _shared_lock_file():
            if not _state_usable(read_shared_state()):
                _register_shared(server)  # other processes reuse this one while it runs
                registered = True
        print(f"base_url: {server.base_url}")
        print(f"model:    {server.model}")
        print(f"started in {server.startup_seconds or 0:.1f} s; press Ctrl-C to stop", flush=True)
        while server.is_running():
            time.sleep(0.5)
        print(f"the server exited; see {server.log_path}", file=sys.stderr)
        return 1
    except (LocalModelError, LocalServerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping ...", file=sys.stderr, flush=True)
        return 0
    finally:
        if server is not None:
            pid = server.pid
            with contextlib.suppress(KeyboardInterrupt):  # a second signal must not skip the clean-up
                server.stop()
            if registered and pid is not None:
                _remove_state_if(pid)


def register(subparsers: Any) -> None:
    """Add ``prepare-model`` and ``serve-local`` to a CLI's subparsers.

    Each sets ``func``: call ``args.func(args)`` after parsing; it returns an exit code.
    """
    p = subparsers.add_parser(
        "prepare-model",
        help="convert the bundled SmolLM2-135M-Instruct GGUF model once (prints the folder)",
        description="Convert the bundled GGUF model into a cached safetensors folder and print its path.",
    )
    p.add_argument("--cache-dir", default=None, help=f"model folder (default {default_model_dir()})")
    p.add_argument("--force", action="store_true", help="convert again even if the folder is there")
    p.set_defaults(func=_cmd_prepare_model)

    s = subparsers.add_parser(
        "serve-local",
        help="run the bundled model's OpenAI-compatible server in the foreground, or --stop the shared one",
        description=(
            "Serve the bundled model on 127.0.0.1 until Ctrl-C (other promptmix processes reuse it "
            "while it runs), or stop the shared server that the app started in the background."
        ),
    )
    s.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    s.add_argument("--threads", type=int, default=None, help="CPU threads (default min(4, CPUs))")
    s.add_argument("--backend", choices=BACKENDS, default=None,
                   help="promptmix: the batching server (default); transformers: `transformers serve`")
    s.add_argument("--stop", action="store_true", help="stop the shared background server and exit")
    s.add_argument("--cache-dir", default=None, help=argparse.SUPPRESS)
    s.set_defaults(func=_cmd_serve_local)
