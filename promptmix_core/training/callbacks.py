"""Training progress callbacks. Only rank 0 calls them under DDP."""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping


class TrainerCallback:
    """Override what you need. ``info`` dicts carry step, total_steps, epoch, epochs."""

    def on_train_begin(self, info: Mapping[str, Any]) -> None: ...

    def on_log(self, step: int, epoch: float, values: Mapping[str, float], info: Mapping[str, Any]) -> None: ...

    def on_evaluate(self, step: int, epoch: float, metrics: Mapping[str, Any], info: Mapping[str, Any]) -> None: ...

    def on_train_end(self, result: Any) -> None: ...


class StoreCallback(TrainerCallback):
    """Writes metrics to ``store.log_metrics`` while training runs; with ``job_id`` also the job's
    progress and heartbeat (``{"phase": "training", "step", "total_steps", "epoch", "epochs", "run_id"}``).

    Names: ``train_loss``, ``lr``, ``val_accuracy``, ``val_macro_f1``, ``val_loss``.
    """

    def __init__(self, store: Any, run_id: int, job_id: int | None = None, *, progress_every_s: float = 1.0):
        self.store = store
        self.run_id = run_id
        self.job_id = job_id
        self.progress_every_s = progress_every_s
        self._last_progress = 0.0

    def _progress(self, info: Mapping[str, Any], force: bool = False) -> None:
        if self.job_id is None:
            return
        now = time.time()
        if not force and now - self._last_progress < self.progress_every_s:
            return
        self._last_progress = now
        self.store.update_job(
            self.job_id,
            progress={
                "phase": "training",
                "run_id": self.run_id,
                "step": int(info.get("step", 0)),
                "total_steps": int(info.get("total_steps", 0)),
                "epoch": round(float(info.get("epoch", 0.0)), 3),
                "epochs": int(info.get("epochs", 0)),
            },
        )

    def on_train_begin(self, info: Mapping[str, Any]) -> None:
        self._progress(info, force=True)

    def on_log(self, step, epoch, values, info) -> None:
        self.store.log_metrics(self.run_id, step, dict(values), epoch=epoch)
        self._progress(info)

    def on_evaluate(self, step, epoch, metrics, info) -> None:
        vals = {f"val_{k}": float(metrics[k]) for k in ("accuracy", "macro_f1", "loss") if k in metrics}
        if vals:
            self.store.log_metrics(self.run_id, step, vals, epoch=epoch)
        self._progress(info, force=True)


class FunctionCallback(TrainerCallback):
    """Calls ``fn(event, payload)`` for every event (handy for progress bars and tests)."""

    def __init__(self, fn: Callable[[str, dict[str, Any]], None]):
        self.fn = fn

    def on_train_begin(self, info):
        self.fn("begin", dict(info))

    def on_log(self, step, epoch, values, info):
        self.fn("log", {"step": step, "epoch": epoch, **values, "info": dict(info)})

    def on_evaluate(self, step, epoch, metrics, info):
        self.fn("evaluate", {"step": step, "epoch": epoch, **{k: v for k, v in metrics.items()}})

    def on_train_end(self, result):
        self.fn("end", {"result": result})


class PrintCallback(TrainerCallback):
    """One line per log / evaluation on stdout (the CLI's progress)."""

    def __init__(self, printer: Callable[[str], None] = print):
        self.printer = printer

    def on_train_begin(self, info):
        self.printer(
            f"training {info.get('n_train')} examples, {info.get('epochs')} epochs, "
            f"{info.get('total_steps')} steps on {info.get('device')}"
        )

    def on_log(self, step, epoch, values, info):
        self.printer(f"step {step}/{info.get('total_steps')} epoch {epoch:.2f} loss {values.get('train_loss', float('nan')):.4f}")

    def on_evaluate(self, step, epoch, metrics, info):
        self.printer(f"  eval step {step}: accuracy {metrics.get('accuracy', 0):.4f} macro-F1 {metrics.get('macro_f1', 0):.4f}")


__all__ = ["FunctionCallback", "PrintCallback", "StoreCallback", "TrainerCallback"]
