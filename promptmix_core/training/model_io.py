"""Loading, saving and predicting with sequence classifiers. Safetensors only, never pickles.

A saved model folder holds ``model.safetensors`` + ``config.json`` (``save_pretrained`` with
safe serialisation), the tokenizer files and ``label_map.json`` (labels in id order, base model,
max_length). Loading refuses folders whose weights are only pickled files (``pytorch_model.bin``,
``*.pt``, ``*.pkl``...): unpickling can run arbitrary code.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlparse

from .config import ModelLoadError, resolve_model_name

LABEL_MAP_FILE = "label_map.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
FORMAT_VERSION = 1


# --------------------------------------------------------------------------- checks
def check_safetensors_folder(folder: str | Path) -> None:
    """Raise :class:`ModelLoadError` unless ``folder`` holds safetensors weights."""
    folder = Path(folder)
    if not folder.exists():
        raise ModelLoadError(f"model folder not found: {folder}")
    if not folder.is_dir():
        raise ModelLoadError(f"{folder} is a file; give the model's folder")
    files = [p.name for p in folder.iterdir() if p.is_file()]
    weights = sorted(f for f in files if f.endswith(".safetensors"))
    if weights:
        for f in weights:
            problem = _safetensors_problem(folder / f)
            if problem:
                raise ModelLoadError(
                    f"{folder / f} {problem}; the model cannot be loaded (train it again, or copy the folder again)"
                )
        return
    pickled = sorted(f for f in files if f.lower().endswith(PICKLE_SUFFIXES))
    if pickled:
        raise ModelLoadError(
            f"{folder} holds only pickled weights ({', '.join(pickled)}); PromptMix loads only "
            "safetensors weights, because unpickling a file can run arbitrary code. Convert the model "
            "once in a trusted environment (model.save_pretrained(dir, safe_serialization=True))"
        )
    raise ModelLoadError(f"{folder} has no model weights (no *.safetensors file)")


def _safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file, read from its header alone (no tensor is loaded):
    8 bytes of header length, then that many bytes of JSON, then the tensor data."""
    try:
        size = path.stat().st_size
        if size == 0:
            return "is empty (0 bytes)"
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"is cut off ({size} bytes)"
            n = int.from_bytes(head, "little")
            if n <= 1 or n > min(size - 8, 100_000_000):
                return f"is not a safetensors file or is cut off ({size:,} bytes)"
            header = json.loads(fh.read(n).decode("utf-8"))
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return "is not a safetensors file (its header is not valid)"
    if not isinstance(header, dict):
        return "is not a safetensors file (its header is not valid)"
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            return "is not a safetensors file (its header is not valid)"
        end = max(end, offsets[1])
    if 8 + n + end > size:
        return f"is cut off ({size:,} bytes of {8 + n + end:,})"
    return None


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except Exception:  # pragma: no cover - cosmetic only
        pass


def _from_pretrained(loader: Any, name: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained`` for a local folder or a hub name, failing fast and clearly offline."""
    p = Path(name).expanduser()
    if p.exists():
        return loader.from_pretrained(str(p), **kwargs)
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/") and name.count("/") > 1:
        raise ModelLoadError(f"model folder not found: {name}")
    try:  # already in the local Hugging Face cache?
        return loader.from_pretrained(name, local_files_only=True, **kwargs)
    except Exception:
        pass
    if not _hub_reachable():
        raise ModelLoadError(
            f"model {name!r} is not a local folder and is not in the local Hugging Face cache, and the "
            "Hub cannot be reached (offline). Give a local model folder, or leave the model empty to "
            "use the bundled all-MiniLM-L6-v2"
        )
    try:
        return loader.from_pretrained(name, **kwargs)
    except Exception as exc:
        raise ModelLoadError(f"could not download model {name!r} from the Hugging Face Hub: {exc}") from None


def load_base_model(model: str | None, labels: Sequence[str]) -> tuple[Any, Any, str]:
    """(model, tokenizer, resolved name) for fine-tuning: a fresh classification head over ``labels``.

    The weights are loaded in fp32 whatever the checkpoint's dtype (transformers 5 would otherwise
    keep an fp16/bf16 checkpoint in half precision, and AdamW on half-precision weights loses the
    small updates); mixed precision is the trainer's autocast.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _quiet_transformers()
    name = resolve_model_name(model)
    if Path(name).exists():
        check_safetensors_folder(name)
    labels = list(labels)
    tokenizer = _from_pretrained(AutoTokenizer, name)
    try:
        net = _from_pretrained(
            AutoModelForSequenceClassification,
            name,
            num_labels=len(labels),
            id2label={i: lab for i, lab in enumerate(labels)},
            label2id={lab: i for i, lab in enumerate(labels)},
            use_safetensors=True,
            ignore_mismatched_sizes=True,
            dtype=torch.float32,
        )
    except ModelLoadError:
        raise
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load model {name!r}: {exc}") from None
    return net, tokenizer, name


# ------------------------------------------------------------------------- classifier
from ..device import pick_device  # noqa: E402,F401 - the one probe lives in device.py


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    """Dynamic padding: (input_ids, attention_mask) LongTensors padded to the longest sequence."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


class Classifier:
    """A fine-tuned model with its tokenizer and labels; ``predict(texts) -> (labels, probs)``."""

    def __init__(self, model: Any, tokenizer: Any, labels: Sequence[str], *, max_length: int = 64,
                 device: str | None = None, meta: dict[str, Any] | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.max_length = max_length
        self.meta = dict(meta or {})
        self.device = device or str(next(model.parameters()).device)
        self._lock = threading.Lock()

    def pad_id(self) -> int:
        pid = self.tokenizer.pad_token_id
        return 0 if pid is None else int(pid)

    def predict_proba(self, texts: Sequence[str], *, batch_size: int = 64) -> Any:
        """Class probabilities, a float32 numpy array of shape (len(texts), len(labels))."""
        import numpy as np
        import torch

        texts = ["" if t is None else str(t) for t in texts]
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        if not texts:
            return out
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: len(enc[i]))
        with self._lock:
            was_training = self.model.training
            self.model.eval()
            try:
                with torch.inference_mode():
                    for s in range(0, len(order), batch_size):
                        idx = order[s : s + batch_size]
                        ids, mask = pad_batch([enc[i] for i in idx], self.pad_id())
                        logits = self.model(
                            input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
                        ).logits
                        out[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
            finally:
                self.model.train(was_training)
        return out

    def predict(self, texts: Sequence[str], *, batch_size: int = 64) -> tuple[list[str], Any]:
        probs = self.predict_proba(texts, batch_size=batch_size)
        labels = [self.labels[int(i)] for i in probs.argmax(axis=1)] if len(probs) else []
        return labels, probs

    def save(self, out_dir: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
        return save_model(self.model, self.tokenizer, self.labels, out_dir,
                          max_length=self.max_length, extra={**self.meta, **(extra or {})})


def save_model(model: Any, tokenizer: Any, labels: Sequence[str], out_dir: str | Path, *,
               max_length: int = 64, extra: dict[str, Any] | None = None) -> Path:
    """``save_pretrained`` (safetensors only) + tokenizer + ``label_map.json``. Returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    net = getattr(model, "module", model)  # unwrap DDP
    net.config.id2label = {i: lab for i, lab in enumerate(labels)}
    net.config.label2id = {lab: i for i, lab in enumerate(labels)}
    net.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    for stray in out.iterdir():  # never leave a pickled copy beside the safetensors
        if stray.is_file() and stray.name.lower().endswith(PICKLE_SUFFIXES) and stray.name != "vocab.bin":
            stray.unlink()
    label_map = {
        "format": FORMAT_VERSION,
        "labels": list(labels),
        "label2id": {lab: i for i, lab in enumerate(labels)},
        "max_length": int(max_length),
        **(extra or {}),
    }
    (out / LABEL_MAP_FILE).write_text(json.dumps(label_map, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return out


def load_classifier(model_dir: str | Path, *, device: str = "auto") -> Classifier:
    """Load a folder written by :func:`save_model` (safetensors only), a quick student's folder
    (``label_map.json`` kind ``embed-lr``, see :mod:`.embed_lr`; it runs on the CPU) or a SetFit
    student's (kind ``setfit``, see :mod:`.setfit_student`)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _quiet_transformers()
    folder = Path(model_dir).expanduser()
    check_safetensors_folder(folder)
    meta: dict[str, Any] = {}
    lm = folder / LABEL_MAP_FILE
    if lm.exists():
        try:
            meta = json.loads(lm.read_text("utf-8"))
        except json.JSONDecodeError as exc:
            raise ModelLoadError(f"{lm} is not valid JSON: {exc}") from None
    if meta.get("kind") == "embed-lr":
        from .embed_lr import load_embed_lr

        return load_embed_lr(folder, meta)  # type: ignore[return-value]
    if meta.get("kind") == "setfit":
        from .setfit_student import load_setfit

        return load_setfit(folder, meta, device=device)  # type: ignore[return-value]
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModelForSequenceClassification.from_pretrained(str(folder), use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load the model in {folder}: {exc}") from None
    labels = meta.get("labels")
    if not labels:
        id2label = model.config.id2label or {}
        labels = [id2label[i] for i in sorted(id2label, key=int)]
    if len(labels) != model.config.num_labels:
        raise ModelLoadError(
            f"{folder}: label_map.json lists {len(labels)} labels but the model has {model.config.num_labels}"
        )
    dev = pick_device(device)
    model.to(dev)
    model.eval()
    return Classifier(model, tokenizer, labels, max_length=int(meta.get("max_length", 128)), device=dev, meta=meta)


_CACHE: dict[tuple[str, str, float], Classifier] = {}
_CACHE_LOCK = threading.Lock()


def get_classifier(model_dir: str | Path, *, device: str = "auto") -> Classifier:
    """:func:`load_classifier` cached per process (keyed on folder, device and weights mtime)."""
    folder = Path(model_dir).expanduser().resolve()
    check_safetensors_folder(folder)
    mtime = max(p.stat().st_mtime for p in folder.glob("*.safetensors"))
    key = (str(folder), device, mtime)
    with _CACHE_LOCK:
        clf = _CACHE.get(key)
        if clf is None:
            for k in [k for k in _CACHE if k[0] == key[0]]:
                del _CACHE[k]
            clf = _CACHE[key] = load_classifier(folder, device=device)
    return clf


def predict(model_dir: str | Path, texts: Sequence[str], *, batch_size: int = 64,
            device: str = "auto") -> tuple[list[str], Any]:
    """Predict with a saved model: (labels, probabilities as a numpy array (n, n_classes))."""
    return get_classifier(model_dir, device=device).predict(texts, batch_size=batch_size)


__all__ = [
    "Classifier",
    "check_safetensors_folder",
    "get_classifier",
    "load_base_model",
    "load_classifier",
    "pad_batch",
    "pick_device",
    "predict",
    "save_model",
]
