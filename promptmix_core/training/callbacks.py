"""Training progress callbacks. Only rank 0 calls them under DDP."""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping


class TrainerCallback:
    """Override what you need. ``info`` dicts carry step, total_steps, epoch, epochs.

    ``on_run_start`` is called first of all (before the data are checked); ``on_run_end(status,
    result, error)`` always last: status "done", "cancelled" or "failed", ``result`` the
    :class:`TrainResult` when training finished (done or cancelled at a step), else ``None`` with
    ``error`` the message."""

    def on_run_start(self) -> None: ...

    def on_run_end(self, status: str, result: Any, error: str | None) -> None: ...

    def on_train_begin(self, info: Mapping[str, Any]) -> None: ...

    def on_log(self, step: int, epoch: float, values: Mapping[str, float], info: Mapping[str, Any]) -> None: ...

    def on_evaluate(self, step: int, epoch: float, metrics: Mapping[str, Any], info: Mapping[str, Any]) -> None: ...

    def on_train_end(self, result: Any) -> None: ...


class StoreCallback(TrainerCallback):
    """Records a training run in the store: its status (running -> done / cancelled / failed with
    the error; never left "running"), device, final metrics and model folder, and the metrics while
    training runs (``store.log_metrics``). Progress (``{"phase": "training", "step", "total_steps",
    "epoch", "epochs", "run_id"}``) goes to ``progress`` (a job's step context), or with only
    ``job_id`` to that job's row.

    Names: ``train_loss``, ``lr``, ``val_accuracy``, ``val_macro_f1``, ``val_loss``.
    """

    def __init__(self, store: Any, run_id: int, job_id: int | None = None, *, progress_every_s: float = 1.0,
                 progress: Callable[[dict[str, Any]], None] | None = None, finish: bool = True):
        from .runs import RunLifecycle

        self.store = store
        self.run_id = run_id
        self.job_id = job_id
        self.life = RunLifecycle(store, run_id)
        self.finish = finish  # False: the caller finishes the run (the job adds the control's scores first)
        self.progress_every_s = progress_every_s
        self._last_progress = 0.0
        if progress is None and job_id is not None:
            progress = lambda p: store.update_job(job_id, progress=p)  # noqa: E731
        self.report = progress

    def on_run_start(self) -> None:
        self.life.start()

    def on_run_end(self, status: str, result: Any, error: str | None) -> None:
        if result is None:
            if status == "cancelled":
                self.life.cancel(error or "stopped")
            else:
                self.life.fail(error or "training stopped unexpectedly")
            return
        dev = result.device + (f" x{result.world_size}" if result.world_size > 1 else "")
        if status == "done" and not self.finish:
            self.life.set_device(dev)
        elif status == "done":
            self.life.finish(result.final_metrics(), model_dir=result.model_dir, device=dev)
        else:
            self.life.cancel(error or status, final_metrics=result.final_metrics())

    def _progress(self, info: Mapping[str, Any], force: bool = False) -> None:
        if self.report is None:
            return
        now = time.time()
        if not force and now - self._last_progress < self.progress_every_s:
            return
        self._last_progress = now
        self.report(
            {
                "phase": "training",
                "run_id": self.run_id,
                "step": int(info.get("step", 0)),
                "total_steps": int(info.get("total_steps", 0)),
                "epoch": round(float(info.get("epoch", 0.0)), 3),
                "epochs": int(info.get("epochs", 0)),
            },
        )

    def on_train_begin(self, info: Mapping[str, Any]) -> None:
        ws = int(info.get("world_size", 1) or 1)
        self.store.update_run(self.run_id, device=f"{info.get('device')}" + (f" x{ws}" if ws > 1 else ""))
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
