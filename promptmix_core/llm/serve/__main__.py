"""``python -m promptmix_core.llm.serve --model-dir DIR --port PORT [...]``: load the model, then serve it
on 127.0.0.1 until SIGTERM/SIGINT, an idle timeout or the launcher's death (:mod:`.lifetime`)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from .engine import MAX_BATCH_ROWS, MAX_QUEUED, Engine
from .lifetime import Watchdog, unregister
from .protocol import MAX_TOKENS_CAP
from .server import HOST, make_server


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m promptmix_core.llm.serve",
                                 description="The bundled model's OpenAI-compatible server (127.0.0.1).")
    ap.add_argument("--model-dir", required=True, help="converted model folder (promptmix prepare-model)")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--model-id", default=None, help="model name requests must use (default: the folder name)")
    ap.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                    help="weights: auto (bfloat16 where the CPU has it natively, else float32)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2") or 2))
    ap.add_argument("--max-batch", type=int, default=MAX_BATCH_ROWS, help="most sequences decoded at once")
    ap.add_argument("--max-tokens-cap", type=int, default=MAX_TOKENS_CAP,
                    help="most tokens one answer may have; a larger max_tokens is clamped to it")
    ap.add_argument("--max-queued", type=int, default=MAX_QUEUED,
                    help="requests queued or running at once; more are answered 503 with Retry-After")
    ap.add_argument("--idle-timeout", type=float, default=0.0,
                    help="exit after this many seconds without a request (0: never)")
    ap.add_argument("--parent-pid", type=int, default=None,
                    help="the launching process: once it is gone, exit after --orphan-idle seconds without a request")
    ap.add_argument("--orphan-idle", type=float, default=0.0,
                    help="seconds without a request before exiting once --parent-pid is gone (0: at once)")
    ap.add_argument("--state-file", default=None,
                    help="shared-server registration to remove on exit when it names this process")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    folder = Path(args.model_dir)
    model_id = args.model_id or folder.name
    t0 = time.perf_counter()
    engine = Engine(folder, threads=args.threads, max_batch=args.max_batch, dtype=args.dtype,
                    max_queued=args.max_queued).start()
    server = make_server(engine, model_id, args.port, max_tokens_cap=args.max_tokens_cap)  # listen once loaded
    print(f"serving {model_id} on http://{HOST}:{args.port}/v1 (loaded in {time.perf_counter() - t0:.1f} s, "
          f"{args.threads} threads, batches of up to {args.max_batch})", file=sys.stderr, flush=True)

    def stop(*_: object) -> None:  # serve_forever runs in this thread: shut it down from another
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    watchdog = Watchdog(server.idle_seconds, stop, idle_timeout=args.idle_timeout, parent_pid=args.parent_pid,
                        orphan_idle=args.orphan_idle)
    if watchdog.active():
        watchdog.start()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        watchdog.cancel()
        server.server_close()
        unregister(args.state_file)
        engine.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
