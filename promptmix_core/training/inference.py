"""Classifying texts with a trained model: the one function behind ``promptmix predict`` and the
app's "Try the model" (a typed text, or an uploaded file of texts into a downloadable CSV).

Works with every saved kind (a fine-tuned model or the quick embed-lr student), through
:func:`.model_io.get_classifier` (cached per process).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

CHUNK = 64  # texts per progress update
STREAM_CHUNK = 1024  # texts read, classified and written at a time by `promptmix predict --input`
TEXT_FILE_TYPES = ("csv", "jsonl", "txt")


@dataclass
class Predictions:
    """``classes`` in the model's order; ``predicted[i]`` and ``probs[i]`` (one row per text)."""

    classes: list[str]
    texts: list[str]
    predicted: list[str]
    probs: Any  # numpy float32 array (n_texts, n_classes)

    def __len__(self) -> int:
        return len(self.texts)

    def confidence(self, i: int) -> float:
        return float(self.probs[i].max()) if len(self.classes) else 0.0

    def rows(self) -> list[dict[str, Any]]:
        """``{"text", "label", "confidence", "probabilities": {class: p}}`` per text."""
        return [{"text": t, "label": lab, "confidence": round(self.confidence(i), 6),
                 "probabilities": {c: round(float(p), 6) for c, p in zip(self.classes, self.probs[i])}}
                for i, (t, lab) in enumerate(zip(self.texts, self.predicted))]

    def ranked(self, i: int) -> list[tuple[str, float]]:
        """(class, probability) for text ``i``, most probable first."""
        return sorted(((c, float(p)) for c, p in zip(self.classes, self.probs[i])), key=lambda x: -x[1])

    def to_csv_bytes(self, header: bool = True) -> bytes:
        """``text,label,confidence,<one column per class>``; formula-safe for spreadsheets.
        ``header=False``: the rows only (a later chunk of a file written in chunks)."""
        from ..export import neutralize_formula

        buf = io.StringIO(newline="")
        w = csv.writer(buf, lineterminator="\r\n")
        if header:
            w.writerow(["text", "label", "confidence", *[neutralize_formula(c) for c in self.classes]])
        for i, (t, lab) in enumerate(zip(self.texts, self.predicted)):
            w.writerow([neutralize_formula(t), neutralize_formula(lab), f"{self.confidence(i):.6f}",
                        *[f"{float(p):.6f}" for p in self.probs[i]]])
        return buf.getvalue().encode("utf-8")

    def to_jsonl_bytes(self) -> bytes:
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.rows()).encode("utf-8")


def classify(
    model_dir: str | Path,
    texts: Sequence[str],
    *,
    device: str = "auto",
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> Predictions:
    """Predict the class and the probability of every class for each text.

    ``progress(done, total)`` is called after every chunk of :data:`CHUNK` texts (a progress bar).
    Raises :class:`.config.ModelLoadError` for a folder that is not a usable model.
    """
    import numpy as np

    from .model_io import get_classifier

    clf = get_classifier(model_dir, device=device)
    texts = ["" if t is None else str(t) for t in texts]
    parts = []
    step = max(CHUNK, batch_size)
    for s in range(0, len(texts), step):
        parts.append(clf.predict_proba(texts[s : s + step], batch_size=batch_size))
        if progress is not None:
            progress(min(s + step, len(texts)), len(texts))
    probs = np.concatenate(parts, axis=0) if parts else np.zeros((0, len(clf.labels)), dtype=np.float32)
    predicted = [clf.labels[int(i)] for i in probs.argmax(axis=1)] if len(probs) else []
    return Predictions(classes=list(clf.labels), texts=texts, predicted=predicted, probs=probs)


def read_texts(data: bytes, filename: str) -> list[str]:
    """Texts to classify from an uploaded or local file.

    ``.csv`` / ``.jsonl``: the ``text`` column or field, read by the one labelled-file reader
    (:func:`promptmix_core.labelled.parse_labelled`; a label column is allowed, not needed).
    ``.txt``: one text per line. Blank texts are skipped.
    """
    from ..errors import TaskError
    from ..labelled import FORMATS, decode_bytes, parse_labelled

    name = str(filename or "the file").replace("\\", "/").rsplit("/", 1)[-1]
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ".txt"
    content = decode_bytes(data, name)
    if suffix in FORMATS:
        return [r["text"] for r in parse_labelled(content, FORMATS[suffix], name, require_label=False)]
    if suffix != ".txt":
        raise TaskError(f"{name}: give a .csv (text column), .jsonl (text field) or .txt file (one text per line)")
    return [ln.strip() for ln in content.splitlines() if ln.strip()]


def iter_text_file(path: str | Path) -> Iterator[str]:
    """The texts of a ``.csv``/``.jsonl``/``.txt`` file on disk (as :func:`read_texts`), one at a time:
    read as a stream of lines, so memory does not grow with the file."""
    from ..errors import TaskError
    from ..labelled import FORMATS, check_file, iter_labelled, utf8_lines

    p = Path(path)
    suffix = p.suffix.lower() or ".txt"
    if suffix not in FORMATS and suffix != ".txt":
        raise TaskError(f"{p.name}: give a .csv (text column), .jsonl (text field) or .txt file (one text per line)")
    check_file(p)
    with open(p, "rb") as fh:
        lines = utf8_lines(fh, p.name)
        if suffix in FORMATS:
            for r in iter_labelled(lines, FORMATS[suffix], p.name, require_label=False):
                yield r["text"]
        else:
            for ln in lines:
                if ln.strip():
                    yield ln.strip()


def classify_stream(model_dir: str | Path, texts: Iterable[str], *, device: str = "auto",
                    chunk: int | None = None) -> Iterator[Predictions]:
    """:func:`classify` over ``texts`` ``chunk`` at a time: one :class:`Predictions` per chunk, so a
    file of any size is classified in bounded memory."""
    chunk = chunk or STREAM_CHUNK
    batch: list[str] = []
    for t in texts:
        batch.append(t)
        if len(batch) >= chunk:
            yield classify(model_dir, batch, device=device)
            batch = []
    if batch:
        yield classify(model_dir, batch, device=device)


__all__ = ["CHUNK", "Predictions", "TEXT_FILE_TYPES", "classify", "classify_stream", "iter_text_file", "read_texts"]
