"""One run lifecycle for every student: the only place a training run's status changes.

A run goes ``queued`` (created) -> ``running`` -> ``done`` / ``cancelled`` / ``failed`` (with the
error). Fine-tuning, the quick embed-lr student, SetFit and the seeds-only control all go through
:class:`RunLifecycle` (the trainers through :class:`.callbacks.StoreCallback`, which calls it; the
training job directly), and every student reports to its callbacks through :func:`reported`, so a
crash in any of them marks the run failed and never leaves it "running".
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator, Mapping, Sequence

from ..errors import Cancelled

log = logging.getLogger(__name__)
ERROR_CHARS = 4000


def end_status(exc: BaseException) -> tuple[str, str]:
    """("cancelled", reason) for a stop (:class:`Cancelled`, Ctrl-C), else ("failed", "Type: message")."""
    if isinstance(exc, (Cancelled, KeyboardInterrupt)):
        return "cancelled", str(exc) or "interrupted"
    return "failed", f"{type(exc).__name__}: {exc}"


class RunLifecycle:
    """A run row of the store, moved through its states in one place."""

    def __init__(self, store: Any, run_id: int):
        self.store = store
        self.run_id = int(run_id)

    @classmethod
    def create(cls, store: Any, config: Mapping[str, Any], *, name: str = "", method: str = "",
               job_id: int | None = None) -> "RunLifecycle":
        return cls(store, store.create_run(dict(config), name=name, method=method, job_id=job_id))

    def start(self, device: str | None = None) -> None:
        self.store.update_run(self.run_id, status="running", device=device)

    def set_device(self, device: str) -> None:
        self.store.update_run(self.run_id, device=device)

    def finish(self, final_metrics: Mapping[str, Any], *, model_dir: str | None = None,
               device: str | None = None) -> None:
        self.store.update_run(self.run_id, status="done", device=device, model_dir=model_dir,
                              final_metrics=dict(final_metrics))

    def cancel(self, reason: str = "stopped", final_metrics: Mapping[str, Any] | None = None) -> None:
        self.store.update_run(self.run_id, status="cancelled", error=str(reason)[:ERROR_CHARS],
                              final_metrics=dict(final_metrics) if final_metrics is not None else None)

    def fail(self, error: str | BaseException) -> None:
        msg = end_status(error)[1] if isinstance(error, BaseException) else str(error)
        self.store.update_run(self.run_id, status="failed", error=(msg or "training stopped unexpectedly")[:ERROR_CHARS])

    def end(self, exc: BaseException) -> None:
        """Record how an exception ended the run (cancelled or failed)."""
        status, msg = end_status(exc)
        if status == "cancelled":
            self.cancel(msg)
        else:
            self.fail(msg)

    @contextlib.contextmanager
    def guard(self) -> Iterator["RunLifecycle"]:
        """Any exception inside marks the run cancelled or failed (then propagates)."""
        try:
            yield self
        except BaseException as exc:
            try:
                self.end(exc)
            except Exception:  # noqa: BLE001 - the original error matters more
                log.exception("could not record the end of run #%s", self.run_id)
            raise


class Reporting:
    """What :func:`reported` yields: set ``result`` before the block ends."""

    result: Any = None


@contextlib.contextmanager
def reported(callbacks: Sequence[Any]) -> Iterator[Reporting]:
    """The callback protocol every student shares: ``on_run_start`` first; ``on_run_end(status,
    result, error)`` last, whatever happens (status from the result, or "cancelled"/"failed" from the
    exception, which propagates)."""
    for cb in callbacks:
        cb.on_run_start()
    rep = Reporting()
    try:
        yield rep
    except BaseException as exc:
        status, msg = end_status(exc)
        for cb in callbacks:
            try:
                cb.on_run_end(status, None, msg)
            except Exception:  # noqa: BLE001 - the original error matters more
                log.exception("a training callback failed while recording the end of the run")
        raise
    for cb in callbacks:
        cb.on_run_end(rep.result.status, rep.result, None)


__all__ = ["Reporting", "RunLifecycle", "end_status", "reported"]
