"""The fine-tuning loop, in plain torch.

Fused AdamW (no weight decay on biases and LayerNorm weights), linear warm-up then linear decay,
dynamic padding, random batches split into length-sorted micro-batches when that saves padding
(same gradient), optional length-grouped batches, gradient clipping. Device "auto" picks CUDA (bf16
autocast, or fp16 with a GradScaler where bf16 is missing), then Apple MPS, then CPU (bf16 autocast
on CPUs with native bf16 instructions, else fp32). Validation and prediction run in fp32.

Under ``torch.distributed`` (``torchrun``, see :mod:`.ddp_entry`) the same :func:`train` runs
data-parallel: a ``DistributedSampler`` shards every epoch, the model is wrapped in DDP, and only
rank 0 evaluates, calls callbacks, writes to the store and saves.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .callbacks import StoreCallback, TrainerCallback
from .config import TrainConfig
from .metrics import compute_metrics
from .runs import reported

log = logging.getLogger(__name__)
MAX_EPOCH_EVALS = 20  # with eval_every unset, evaluate at most ~this many times (plus the end)


@dataclass
class TrainResult:
    status: str  # "done" or "cancelled"
    steps: int
    total_steps: int
    epochs: int
    epoch: float
    train_loss: float | None
    val_metrics: dict[str, Any] | None
    history: list[dict[str, Any]]
    train_time_s: float
    elapsed_s: float
    train_samples_per_s: float
    device: str
    precision: str
    world_size: int
    rank: int
    labels: list[str]
    n_train: int
    config: dict[str, Any]
    model_dir: str | None = None
    classifier: Any = field(default=None, repr=False)  # a model_io.Classifier (rank 0), not serialised
    test_metrics: dict[str, Any] | None = None  # scores on the test set, when one was given

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "classifier"}

    def final_metrics(self) -> dict[str, Any]:
        """The flat summary written to the store's ``runs.final_metrics``."""
        out: dict[str, Any] = {
            "status": self.status,
            "steps": self.steps,
            "epochs": self.epochs,
            "train_loss": self.train_loss,
            "train_samples_per_s": round(self.train_samples_per_s, 2),
            "train_time_s": round(self.train_time_s, 2),
            "n_train": self.n_train,
            "device": self.device,
            "precision": self.precision,
        }
        if self.val_metrics:
            out["val_accuracy"] = self.val_metrics["accuracy"]
            out["val_macro_f1"] = self.val_metrics["macro_f1"]
            out["val_n"] = self.val_metrics["n"]
            out["val_per_class"] = self.val_metrics["per_class"]
            out["val_confusion"] = self.val_metrics["confusion"]
        if self.test_metrics:
            out["test_accuracy"] = self.test_metrics["accuracy"]
            out["test_macro_f1"] = self.test_metrics["macro_f1"]
            out["test_n"] = self.test_metrics["n"]
            out["test_per_class"] = self.test_metrics["per_class"]
            out["test_confusion"] = self.test_metrics["confusion"]
        if self.config.get("student"):
            out["student"] = self.config["student"]
        return out


class _Dist:
    def __init__(self) -> None:
        import torch.distributed as dist

        self.dist = dist
        self.on = dist.is_available() and dist.is_initialized()
        self.world = dist.get_world_size() if self.on else 1
        self.rank = dist.get_rank() if self.on else 0
        self.local_rank = int(os.environ.get("LOCAL_RANK", self.rank)) if self.on else 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def any_flag(self, flag: bool, device: str) -> bool:
        if not self.on:
            return flag
        import torch

        t = torch.tensor([1.0 if flag else 0.0], device=device)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def mean(self, value: float, device: str) -> float:
        if not self.on:
            return value
        import torch

        t = torch.tensor([value], dtype=torch.float64 if not device.startswith("mps") else torch.float32,
                         device=device)
        self.dist.all_reduce(t)
        return float(t.item()) / self.world

    def barrier(self) -> None:
        if self.on:
            self.dist.barrier()


def set_seed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bfloat16 instructions (AVX512-BF16 or AMX), where bf16 autocast is fast.

    Elsewhere bf16 on the CPU is emulated and slower than fp32, so "auto" stays fp32 there.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            flags = fh.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def _amp_settings(device: str, precision: str) -> tuple[Any, bool, str]:
    """(autocast dtype or None, use GradScaler, precision name)."""
    import torch

    if device.startswith("cuda"):
        if precision in ("auto", "bf16") and torch.cuda.is_bf16_supported():
            return torch.bfloat16, False, "bf16"
        if precision in ("auto", "fp16", "bf16"):
            return torch.float16, True, "fp16"
        return None, False, "fp32"
    if precision == "bf16" or (precision == "auto" and device == "cpu" and cpu_has_native_bf16()):
        return torch.bfloat16, False, "bf16"
    if precision == "fp16" and device == "mps":
        return torch.float16, False, "fp16"
    return None, False, "fp32"


def _batches(order: list[int], lengths: Sequence[int], batch_size: int, group: bool, rng: random.Random) -> list[list[int]]:
    if not group:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    mega = batch_size * 50
    out: list[list[int]] = []
    for s in range(0, len(order), mega):
        chunk = sorted(order[s : s + mega], key=lambda i: -lengths[i])
        out.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(out)
    return out


def split_by_padding(idx: list[int], lengths: Sequence[int], min_saving: float = 0.25) -> list[list[int]]:
    """One random batch as one or two length-sorted micro-batches (see ``TrainConfig.split_padding``).

    Splits only when the padded token count falls by at least ``min_saving`` (each extra
    forward/backward pass has a fixed cost), and never into a micro-batch of fewer than 2 examples.
    """
    n = len(idx)
    if n < 4:
        return [idx]
    order = sorted(idx, key=lambda i: lengths[i])
    ls = [lengths[i] for i in order]
    full = n * ls[-1]
    best_i, best_cost = 0, full
    for i in range(2, n - 1):
        cost = i * ls[i - 1] + (n - i) * ls[-1]
        if cost < best_cost:
            best_i, best_cost = i, cost
    if best_i and best_cost <= (1.0 - min_saving) * full:
        return [order[:best_i], order[best_i:]]
    return [idx]


def evaluate_model(model: Any, enc: Sequence[Sequence[int]], label_ids: Sequence[int], labels: Sequence[str],
                   *, device: str, pad_id: int, batch_size: int = 64, amp_dtype: Any = None) -> dict[str, Any]:
    """Loss and :func:`compute_metrics` of a model on pre-tokenised examples."""
    import torch
    import torch.nn.functional as F

    from .model_io import pad_batch

    net = getattr(model, "module", model)
    was = net.training
    net.eval()
    preds = [0] * len(enc)
    total_loss = 0.0
    order = sorted(range(len(enc)), key=lambda i: len(enc[i]))
    dev_type = device.split(":")[0]
    try:
        with torch.inference_mode():
            for s in range(0, len(order), batch_size):
                idx = order[s : s + batch_size]
                ids, mask = pad_batch([enc[i] for i in idx], pad_id)
                y = torch.as_tensor([label_ids[i] for i in idx], device=device)
                with torch.autocast(dev_type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    logits = net(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                logits = logits.float()
                total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
                for i, p in zip(idx, logits.argmax(-1).tolist()):
                    preds[i] = p
    finally:
        net.train(was)
    m = compute_metrics([labels[i] for i in label_ids], [labels[p] for p in preds], labels)
    m["loss"] = total_loss / max(1, len(enc))
    m["predicted"] = [labels[p] for p in preds]  # per row, in order (the control's paired comparison)
    return m


def train(
    config: TrainConfig | Mapping[str, Any] | None,
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    label_names: Sequence[str] | None = None,
    val_texts: Sequence[str] | None = None,
    val_labels: Sequence[str] | None = None,
    out_dir: str | Path | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    should_stop: Callable[[], bool] | None = None,
    store: Any = None,
    run_id: int | None = None,
    job_id: int | None = None,
    keep_model: bool = True,
    test_texts: Sequence[str] | None = None,
    test_labels: Sequence[str] | None = None,
) -> TrainResult:
    """Fine-tune a sequence classifier on ``texts``/``labels``.

    ``test_texts``/``test_labels`` (real labelled data, never trained on) are scored once at the end,
    in fp32 like ``predict``; the scores go to ``TrainResult.test_metrics`` (and ``test_*`` in the
    run's final metrics), before the run is marked done.

    The trainer writes nothing itself: it reports through ``callbacks`` (rank 0 only). With
    ``store`` and ``run_id`` a :class:`StoreCallback` is put first, so the run goes running -> done /
    cancelled / failed (with the error) and metrics are logged while training; a crash never
    leaves the run "running". ``should_stop()`` is checked every step; when it returns true the
    run stops (status "cancelled", nothing saved). ``out_dir`` saves the model (safetensors).
    A :class:`~promptmix_core.errors.Cancelled` (or Ctrl-C) raised while training ends the run as
    "cancelled"; any other error as "failed".
    """
    t_start = time.perf_counter()
    dist = _Dist()
    cbs: list[TrainerCallback] = list(callbacks) if dist.main else []
    if store is not None and run_id is not None and dist.main:
        cbs.insert(0, StoreCallback(store, run_id, job_id))
    with reported(cbs) as rep:
        cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
        texts, labels, names = _check_training_data(texts, labels, label_names)
        val = _check_split("validation", val_texts, val_labels, names)
        test = _check_split("test", test_texts, test_labels, names)
        cfg = cfg.resolved(len(names))
        import torch

        # grad mode is process-global: something run before (e.g. an embedding helper that
        # switched it off) must not silently break training
        with torch.enable_grad():
            rep.result = _train_impl(cfg, texts, labels, names, val, out_dir, cbs, should_stop, keep_model, dist,
                                     t_start, test)
    return rep.result


def _check_training_data(texts: Sequence[str], labels: Sequence[str],
                         label_names: Sequence[str] | None) -> tuple[list[str], list[str], list[str]]:
    """Texts, labels and the label set, checked (every problem a ``ValueError``)."""
    texts = [str(t) for t in texts]
    labels = [str(lab) for lab in labels]
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    if not texts:
        raise ValueError("no training examples")
    names = list(label_names) if label_names is not None else list(dict.fromkeys(sorted(set(labels))))
    if len(names) < 2:
        raise ValueError("training needs at least two classes")
    unknown = sorted(set(labels) - set(names))
    if unknown:
        raise ValueError(f"training labels not in the label set: {', '.join(unknown[:5])}")
    return texts, labels, names


def _check_split(what: str, texts: Sequence[str] | None, labels: Sequence[str] | None,
                 names: Sequence[str]) -> tuple[list[str], list[str]] | None:
    """A validation or test split as (texts, labels), or None when there is none."""
    if not texts:
        return None
    texts = [str(t) for t in texts]
    gold = [str(v) for v in (labels or [])]
    if len(texts) != len(gold):
        raise ValueError(f"{len(texts)} {what} texts but {len(gold)} labels")
    bad = sorted(set(gold) - set(names))
    if bad:
        raise ValueError(f"{what} labels not in the label set: {', '.join(bad[:5])}")
    return texts, gold


@dataclass
class _Setup:
    """The model on its device, with the precision settings and the tokeniser."""

    device: str
    amp_dtype: Any
    use_scaler: bool
    precision: str
    split_padding: bool
    model: Any
    net: Any  # the model, or its DDP wrapper
    tokenizer: Any
    model_name: str
    pad_id: int


def _setup(cfg: TrainConfig, names: Sequence[str], dist: _Dist) -> _Setup:
    """Step 1: device, precision, seed, the base model with a fresh head (wrapped in DDP when distributed)."""
    import torch

    from .model_io import load_base_model, pick_device

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if dist.on and torch.cuda.is_available() and cfg.device in ("auto", "cuda"):
        device = f"cuda:{dist.local_rank}"
        torch.cuda.set_device(dist.local_rank)
    else:
        device = pick_device(cfg.device)
        if dist.on and device == "mps":
            device = "cpu"  # no MPS process groups
    amp_dtype, use_scaler, precision = _amp_settings(device, cfg.precision)
    set_seed(cfg.seed)
    model, tokenizer, model_name = load_base_model(cfg.model, names)
    model.to(device)
    model.train()
    net = model
    if dist.on:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[dist.local_rank] if device.startswith("cuda") else None)
    return _Setup(device=device, amp_dtype=amp_dtype, use_scaler=use_scaler, precision=precision,
                  split_padding=cfg.split_padding if cfg.split_padding is not None else amp_dtype is None,
                  model=model, net=net, tokenizer=tokenizer, model_name=model_name,
                  pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)


def _optimizer(model: Any, cfg: TrainConfig, total_steps: int, use_scaler: bool) -> tuple[Any, Any, Any]:
    """Step 2: fused AdamW (no decay on biases and LayerNorm), linear warm-up then decay, the fp16 scaler."""
    import torch

    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in n or "layer_norm" in n or n.endswith(".bias") else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:  # the fused kernel is several times faster than the for-each one (CPU and CUDA)
        optim = torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(0.9, 0.999), eps=1e-8, fused=True)
    except (RuntimeError, TypeError, ValueError):
        optim = torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(0.9, 0.999), eps=1e-8)
    warmup = int(math.ceil(cfg.warmup_ratio * total_steps))

    def lr_lambda(step: int) -> float:
        if step < warmup:
            return float(step) / float(max(1, warmup))
        return max(0.0, float(total_steps - step) / float(max(1, total_steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(optim, lr_lambda)
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    return optim, sched, scaler


class _Loop:
    """Step 3: the optimisation loop's state (step, running loss, history) and its parts."""

    def __init__(self, cfg: TrainConfig, su: _Setup, dist: _Dist, enc: list[list[int]], y_all: list[int],
                 names: Sequence[str], val: tuple[list[list[int]], list[int]] | None,
                 cbs: list[TrainerCallback], should_stop: Callable[[], bool] | None):
        import torch

        self.cfg, self.su, self.dist, self.enc, self.y_all, self.names = cfg, su, dist, enc, y_all, names
        self.val, self.cbs, self.should_stop = val, cbs, should_stop
        self.lengths = [len(e) for e in enc]
        self.epochs, self.steps_per_epoch, self.total_steps = cfg.plan(len(enc), dist.world)
        self.optim, self.sched, self.scaler = _optimizer(su.model, cfg, self.total_steps, su.use_scaler)
        self.sampler = None
        if dist.on:
            from torch.utils.data.distributed import DistributedSampler

            self.sampler = DistributedSampler(range(len(enc)), num_replicas=dist.world, rank=dist.rank,
                                              shuffle=True, seed=cfg.seed, drop_last=False)
        self.eval_epochs = max(1, math.ceil(self.epochs / MAX_EPOCH_EVALS)) if cfg.eval_every is None else 0
        self.info: dict[str, Any] = {
            "step": 0, "total_steps": self.total_steps, "epoch": 0.0, "epochs": self.epochs,
            "n_train": len(enc), "n_val": len(val[0]) if val else 0, "device": su.device,
            "precision": su.precision, "world_size": dist.world, "model": su.model_name,
            "learning_rate": cfg.learning_rate,
        }
        self.history: list[dict[str, Any]] = []
        self.val_metrics: dict[str, Any] | None = None
        self.step = 0
        self.status = "done"
        self.running = torch.zeros((), device=su.device)
        self.running_n = 0
        self.last_loss: float | None = None
        self.samples = 0
        self.train_time = 0.0
        self.evaluated_at = -1

    def evaluate(self, epoch_f: float) -> None:
        if self.val is None or self.evaluated_at == self.step:
            return
        self.evaluated_at = self.step
        if self.dist.main:
            # fp32, like predict(): the reported metrics are exactly the saved model's
            m = evaluate_model(self.su.net, self.val[0], self.val[1], self.names, device=self.su.device,
                               pad_id=self.su.pad_id, batch_size=self.cfg.eval_batch_size, amp_dtype=None)
            self.val_metrics = m
            self.history.append({"step": self.step, "epoch": epoch_f, "val_accuracy": m["accuracy"],
                                 "val_macro_f1": m["macro_f1"], "val_loss": m["loss"]})
            self.info.update(step=self.step, epoch=epoch_f)
            for cb in self.cbs:
                cb.on_evaluate(self.step, epoch_f, m, self.info)

    def _epoch_order(self, ep: int) -> list[list[int]]:
        import torch

        if self.sampler is not None:
            self.sampler.set_epoch(ep)
            order = list(self.sampler)
        else:
            g = torch.Generator().manual_seed(self.cfg.seed * 1000 + ep)
            order = torch.randperm(len(self.enc), generator=g).tolist()
        return _batches(order, self.lengths, self.cfg.batch_size, self.cfg.group_by_length,
                        random.Random(self.cfg.seed * 1000 + ep))

    def _optimizer_step(self, idx: list[int]) -> Any:
        """Forward and backward over one batch (maybe as length-sorted micro-batches), then one step."""
        import torch
        import torch.nn.functional as F

        from .model_io import pad_batch

        su, net = self.su, self.su.net
        dev_type = su.device.split(":")[0]
        parts = split_by_padding(idx, self.lengths) if su.split_padding else [idx]
        loss_sum: Any = 0.0
        for pi, part in enumerate(parts):
            ids, mask = pad_batch([self.enc[i] for i in part], su.pad_id)
            y = torch.as_tensor([self.y_all[i] for i in part], device=su.device)
            last = pi == len(parts) - 1
            sync = contextlib.nullcontext() if (last or not self.dist.on) else net.no_sync()
            with sync:
                with torch.autocast(dev_type, dtype=su.amp_dtype, enabled=su.amp_dtype is not None):
                    logits = net(input_ids=ids.to(su.device), attention_mask=mask.to(su.device)).logits
                # mean over the whole batch: each micro-batch weighted by its share
                part_loss = F.cross_entropy(logits.float(), y) * (len(part) / len(idx))
                if self.scaler is not None:
                    self.scaler.scale(part_loss).backward()
                else:
                    part_loss.backward()
            loss_sum = loss_sum + part_loss.detach()
        if self.scaler is not None:
            self.scaler.unscale_(self.optim)
        if self.cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(su.model.parameters(), self.cfg.max_grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optim)
            self.scaler.update()
        else:
            self.optim.step()
        self.sched.step()
        self.optim.zero_grad(set_to_none=True)
        return loss_sum

    def _log(self, epoch_f: float) -> None:
        self.last_loss = self.dist.mean(float(self.running.item()) / self.running_n, self.su.device)
        self.running.zero_()
        self.running_n = 0
        lr_now = self.sched.get_last_lr()[0]
        self.info.update(step=self.step, epoch=epoch_f)
        self.history.append({"step": self.step, "epoch": epoch_f, "train_loss": self.last_loss, "lr": lr_now})
        for cb in self.cbs:
            cb.on_log(self.step, epoch_f, {"train_loss": self.last_loss, "lr": lr_now}, self.info)

    def _stop_requested(self) -> bool:
        flag = bool(self.should_stop()) if self.should_stop is not None and self.dist.main else False
        return self.dist.any_flag(flag, self.su.device)

    def _run_epoch(self, ep: int) -> bool:
        """One epoch; True when the run ends inside it (cancelled, or the last step taken)."""
        batches = self._epoch_order(ep)
        t0 = time.perf_counter()
        try:
            for bi, idx in enumerate(batches):
                loss = self._optimizer_step(idx)
                self.step += 1
                self.samples += len(idx)
                self.running += loss.detach()
                self.running_n += 1
                epoch_f = ep + (bi + 1) / len(batches)
                if self.step % self.cfg.log_every == 0 or self.step == self.total_steps:
                    self._log(epoch_f)
                if self._stop_requested():
                    self.status = "cancelled"
                    return True
                if self.cfg.eval_every is not None and self.step % self.cfg.eval_every == 0:
                    self.train_time += time.perf_counter() - t0
                    self.evaluate(epoch_f)
                    t0 = time.perf_counter()
                if self.step >= self.total_steps:
                    return True
            return False
        finally:
            self.train_time += time.perf_counter() - t0

    def run(self) -> None:
        for ep in range(self.epochs):
            if self._run_epoch(ep):
                break
            if self.eval_epochs and ((ep + 1) % self.eval_epochs == 0):
                self.evaluate(float(ep + 1))
        if self.running_n and self.status == "done":
            self.last_loss = self.dist.mean(float(self.running.item()) / self.running_n, self.su.device)
        if self.status == "done":
            self.evaluate(round(self.step / self.steps_per_epoch, 4))


def _train_impl(cfg: TrainConfig, texts, labels, names, val, out_dir, cbs: list[TrainerCallback], should_stop,
                keep_model, dist: _Dist, t_start: float,
                test: tuple[list[str], list[str]] | None = None) -> TrainResult:
    """Set up, tokenise, run the loop, then score the test set, save and report."""
    su = _setup(cfg, names, dist)
    label_index = {lab: i for i, lab in enumerate(names)}

    def encode(split: tuple[Sequence[str], Sequence[str]]) -> tuple[list[list[int]], list[int]]:
        enc = su.tokenizer(list(split[0]), truncation=True, max_length=cfg.max_length)["input_ids"]
        return enc, [label_index[lab] for lab in split[1]]

    enc, y_all = encode((texts, labels))
    loop = _Loop(cfg, su, dist, enc, y_all, names, encode(val) if val else None, cbs, should_stop)
    for cb in cbs:
        cb.on_train_begin(loop.info)
    loop.run()
    return _finish(cfg, su, dist, loop, names, out_dir, keep_model, t_start, encode(test) if test else None)


def _finish(cfg: TrainConfig, su: _Setup, dist: _Dist, loop: _Loop, names: Sequence[str], out_dir, keep_model: bool,
            t_start: float, test: tuple[list[list[int]], list[int]] | None) -> TrainResult:
    """Step 4: the test set scored (fp32), the model saved, the result reported."""
    from .model_io import Classifier, save_model

    done = loop.status == "done" and dist.main
    test_metrics = None
    if done and test is not None:
        test_metrics = evaluate_model(su.net, test[0], test[1], names, device=su.device, pad_id=su.pad_id,
                                      batch_size=cfg.eval_batch_size, amp_dtype=None)
    val_metrics = loop.val_metrics
    model_dir = None
    if done and out_dir is not None:
        extra = {"base_model": su.model_name, "train_config": cfg.to_dict(),
                 "val_metrics": {k: val_metrics[k] for k in ("accuracy", "macro_f1", "n")} if val_metrics else None,
                 "test_metrics": {k: test_metrics[k] for k in ("accuracy", "macro_f1", "n")} if test_metrics else None}
        model_dir = str(save_model(su.model, su.tokenizer, names, out_dir, max_length=cfg.max_length, extra=extra))
    dist.barrier()
    su.model.eval()
    clf = Classifier(su.model, su.tokenizer, names, max_length=cfg.max_length, device=su.device,
                     meta={"base_model": su.model_name}) if keep_model and dist.main else None
    result = TrainResult(
        status=loop.status, steps=loop.step, total_steps=loop.total_steps, epochs=loop.epochs,
        epoch=round(loop.step / loop.steps_per_epoch, 4), train_loss=loop.last_loss, val_metrics=val_metrics,
        history=loop.history, train_time_s=loop.train_time, elapsed_s=time.perf_counter() - t_start,
        train_samples_per_s=(loop.samples * dist.world) / loop.train_time if loop.train_time > 0 else 0.0,
        device=su.device, precision=su.precision, world_size=dist.world, rank=dist.rank,
        labels=list(names), n_train=len(loop.enc), config=cfg.to_dict(), model_dir=model_dir, classifier=clf,
        test_metrics=test_metrics,
    )
    for cb in loop.cbs:
        cb.on_train_end(result)
    return result


__all__ = ["TrainResult", "evaluate_model", "set_seed", "train"]
