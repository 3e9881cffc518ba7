"""When the server leaves on its own: an idle timeout, and its launcher's death.

The policy (docs/LOCAL_MODEL.md, "Lifetime"): a private server (``LocalServer`` as a context manager,
``promptmix serve-local``) exits as soon as the process that launched it is gone (``orphan_idle`` 0),
so a killed launcher leaves no 2 GB process behind; the shared background server (started by the app or
a command for later ones to reuse) stays while its launcher runs, and exits once the launcher is gone
and no request came for ``orphan_idle`` seconds (default 10 minutes, ``$PROMPTMIX_LOCAL_IDLE_MINUTES``).
``idle_timeout`` exits after that long with no request whoever is alive (off by default).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from pathlib import Path
from typing import Callable


def parent_gone(parent_pid: int) -> bool:
    """Whether ``parent_pid`` (the process that started this one) has exited: this process was re-parented
    (its parent pid changed), or no process has that pid any more."""
    if os.getppid() != parent_pid:
        return True
    try:
        os.kill(parent_pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def should_exit(idle: float, *, idle_timeout: float = 0.0, parent_pid: int | None = None,
                orphan_idle: float = 0.0) -> str | None:
    """The reason to exit now, or None. ``idle`` is the seconds since the last request ended (0 while
    one is being answered)."""
    if idle_timeout and idle >= idle_timeout:
        return f"no request for {idle:.0f} s (idle timeout {idle_timeout:g} s)"
    if parent_pid is not None and parent_pid > 0 and parent_gone(parent_pid) and idle >= orphan_idle:
        return f"the launching process {parent_pid} is gone and no request came for {idle:.0f} s"
    return None


class Watchdog(threading.Thread):
    """Checks every ``every`` seconds; calls ``stop(reason)`` once when the server should exit."""

    def __init__(self, idle_seconds: Callable[[], float], stop: Callable[[str], None], *, idle_timeout: float = 0.0,
                 parent_pid: int | None = None, orphan_idle: float = 0.0, every: float = 1.0):
        super().__init__(name="lifetime", daemon=True)
        self.idle_seconds, self.stop_server = idle_seconds, stop
        self.idle_timeout, self.parent_pid, self.orphan_idle = idle_timeout, parent_pid, orphan_idle
        self.every = every
        self._done = threading.Event()

    def active(self) -> bool:
        return bool(self.idle_timeout) or (self.parent_pid is not None and self.parent_pid > 0)

    def run(self) -> None:
        while not self._done.wait(self.every):
            reason = should_exit(self.idle_seconds(), idle_timeout=self.idle_timeout, parent_pid=self.parent_pid,
                                 orphan_idle=self.orphan_idle)
            if reason:
                print(f"stopping: {reason}", file=sys.stderr, flush=True)
                self.stop_server(reason)
                return

    def cancel(self) -> None:
        self._done.set()


def unregister(state_file: str | os.PathLike[str] | None, pid: int | None = None) -> None:
    """Remove the shared-server state file when it names this process (another server's is left alone)."""
    if not state_file:
        return
    path = Path(state_file)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(state, dict) and state.get("pid") == (pid or os.getpid()):
        with contextlib.suppress(OSError):
            path.unlink()
