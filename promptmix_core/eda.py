"""EDA: Easy Data Augmentation (Wei & Zou, EMNLP 2019), the classic augmentation baseline.

Four operations on a sentence, each touching ``n = max(1, int(alpha * words))`` words: synonym
replacement (SR), random insertion of a synonym of a random word (RI), random swap (RS), and random
deletion of each word with probability ``alpha`` (RD). As in the original code, ``num_aug``
augmented sentences are made with roughly a quarter from each operation.

Synonym source (offline). The original uses WordNet through NLTK, whose data must be downloaded
at run time, which this project cannot do. Instead synonyms are the nearest neighbours, by cosine
similarity, in the *input word-embedding matrix* of the bundled all-MiniLM-L6-v2
(``embeddings.word_embeddings.weight``, read straight from its safetensors file with numpy; no
torch needed), restricted to whole-word, alphabetic WordPiece tokens (no ``##`` pieces), never
stopwords, at least ``min_similarity`` similar, and not a morphological variant of the word
(``film`` -> ``films`` is skipped). These neighbours are usually near-synonyms or close relatives
(``funny`` -> ``hilarious``, ``money`` -> ``cash``, ``quickly`` -> ``rapidly``) but, unlike WordNet,
can be antonyms (``good`` -> ``bad``) or topical relatives; words outside the ~22k whole-word
vocabulary get no synonyms. Punctuation attached to a word is kept.
"""

from __future__ import annotations

import functools
import random
import re
import threading
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

# The stopword list of the original EDA code (NLTK's English list).
STOPWORDS = frozenset(
    """i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she
    her hers herself it its itself they them their theirs themselves what which who whom this that
    these those am is are was were be been being have has had having do does did doing a an the and
    but if or because as until while of at by for with about against between into through during
    before after above below to from up down in out on off over under again further then once here
    there when where why how all any both each few more most other some such no nor not only own same
    so than too very s t can will just don should now""".split()
)
_WORD = re.compile(r"^([^\w]*)([A-Za-z]+(?:'[A-Za-z]+)?)([^\w]*)$")


class EmbeddingSynonyms:
    """Nearest whole-word neighbours in a BERT-style model's input embeddings (see module docstring)."""

    def __init__(self, model_dir: str | Path | None = None, *, top_k: int = 8, min_similarity: float = 0.45):
        self.model_dir = model_dir
        self.top_k = top_k
        self.min_similarity = min_similarity
        self._lock = threading.Lock()
        self._words: list[str] | None = None
        self._index: dict[str, int] = {}
        self._emb: Any = None

    def _load(self) -> None:
        if self._words is not None:
            return
        with self._lock:
            if self._words is not None:
                return
            import numpy as np
            from safetensors import safe_open

            if self.model_dir is None:
                from .training.config import bundled_model_path

                folder = Path(bundled_model_path())
            else:
                folder = Path(self.model_dir)
            vocab = (folder / "vocab.txt").read_text("utf-8").split("\n")
            files = sorted(folder.glob("*.safetensors"))
            if not files:
                raise FileNotFoundError(f"no safetensors weights in {folder}")
            matrix = None
            for fpath in files:
                with safe_open(str(fpath), framework="np") as f:
                    key = next((k for k in f.keys() if k.endswith("word_embeddings.weight")), None)
                    if key:
                        matrix = f.get_tensor(key)
                        break
            if matrix is None:
                raise ValueError(f"{folder} has no word-embedding matrix")
            keep = [i for i, w in enumerate(vocab[: matrix.shape[0]])
                    if re.fullmatch(r"[a-z]{2,}", w) and w not in STOPWORDS]
            emb = matrix[keep].astype(np.float32)
            emb /= np.linalg.norm(emb, axis=1, keepdims=True) + 1e-8
            self._emb = emb
            self._words = [vocab[i] for i in keep]
            self._index = {w: i for i, w in enumerate(self._words)}

    @staticmethod
    def _variant(a: str, b: str) -> bool:
        n = 0
        for x, y in zip(a, b):
            if x != y:
                break
            n += 1
        short = min(len(a), len(b))
        if n >= max(4, short - 2) or (short <= 4 and n >= short - 1):
            return True
        for pre in ("un", "in", "im", "dis", "non", "ir", "il"):
            if a == pre + b or b == pre + a:
                return True
        return False

    @functools.lru_cache(maxsize=20000)
    def synonyms(self, word: str) -> tuple[str, ...]:
        word = word.lower()
        if word in STOPWORDS:
            return ()
        self._load()
        i = self._index.get(word)
        if i is None:
            return ()
        import numpy as np

        sims = self._emb @ self._emb[i]
        cand = np.argpartition(-sims, min(len(sims) - 1, self.top_k * 4 + 1))[: self.top_k * 4 + 1]
        cand = cand[np.argsort(-sims[cand])]
        out: list[str] = []
        for j in cand:
            w = self._words[j]
            if j == i or sims[j] < self.min_similarity or self._variant(word, w):
                continue
            out.append(w)
            if len(out) >= self.top_k:
                break
        return tuple(out)

    # lru_cache on a method keys on self too; hashing by identity is what we want
    __hash__ = object.__hash__


@functools.lru_cache(maxsize=4)
def default_synonyms() -> EmbeddingSynonyms:
    return EmbeddingSynonyms()


def _match_case(src: str, new: str) -> str:
    if src.isupper() and len(src) > 1:
        return new.upper()
    if src[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


def _core(token: str) -> tuple[str, str, str] | None:
    m = _WORD.match(token)
    return (m.group(1), m.group(2), m.group(3)) if m else None


def synonym_replacement(words: list[str], n: int, rng: random.Random, syn: EmbeddingSynonyms) -> list[str]:
    out = list(words)
    candidates = [i for i, w in enumerate(out) if (c := _core(w)) and c[1].lower() not in STOPWORDS]
    rng.shuffle(candidates)
    replaced = 0
    for i in candidates:
        pre, core, post = _core(out[i])  # type: ignore[misc]
        options = syn.synonyms(core.lower())
        if options:
            out[i] = pre + _match_case(core, rng.choice(options)) + post
            replaced += 1
        if replaced >= n:
            break
    return out


def random_insertion(words: list[str], n: int, rng: random.Random, syn: EmbeddingSynonyms) -> list[str]:
    out = list(words)
    for _ in range(n):
        for _attempt in range(10):
            if not out:
                break
            c = _core(rng.choice(out))
            options = syn.synonyms(c[1].lower()) if c else ()
            if options:
                out.insert(rng.randint(0, len(out)), rng.choice(options))
                break
    return out


def random_swap(words: list[str], n: int, rng: random.Random) -> list[str]:
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(n):
        i, j = rng.sample(range(len(out)), 2)
        out[i], out[j] = out[j], out[i]
    return out


def random_deletion(words: list[str], p: float, rng: random.Random) -> list[str]:
    if len(words) <= 1:
        return list(words)
    out = [w for w in words if rng.random() > p]
    return out or [rng.choice(words)]


def eda(
    sentence: str,
    *,
    alpha_sr: float = 0.1,
    alpha_ri: float = 0.1,
    alpha_rs: float = 0.1,
    p_rd: float = 0.1,
    num_aug: int = 9,
    seed: int | random.Random = 0,
    synonyms: EmbeddingSynonyms | None = None,
) -> list[str]:
    """``num_aug`` augmented versions of ``sentence`` (the original is not included; duplicates of
    it or of each other are removed, so fewer may come back for very short sentences)."""
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    syn = synonyms or default_synonyms()
    words = sentence.split()
    if not words or num_aug <= 0:
        return []
    n_words = len(words)
    per_op = int(num_aug / 4) + 1
    made: list[str] = []
    if alpha_sr > 0:
        n = max(1, int(alpha_sr * n_words))
        made += [" ".join(synonym_replacement(words, n, rng, syn)) for _ in range(per_op)]
    if alpha_ri > 0:
        n = max(1, int(alpha_ri * n_words))
        made += [" ".join(random_insertion(words, n, rng, syn)) for _ in range(per_op)]
    if alpha_rs > 0:
        n = max(1, int(alpha_rs * n_words))
        made += [" ".join(random_swap(words, n, rng)) for _ in range(per_op)]
    if p_rd > 0:
        made += [" ".join(random_deletion(words, p_rd, rng)) for _ in range(per_op)]
    original = " ".join(words)
    unique = [s for s in dict.fromkeys(made) if s and s != original]
    rng.shuffle(unique)
    return unique[:num_aug]


def augment_rows(
    rows: Iterable[Mapping[str, Any]],
    *,
    num_aug: int = 9,
    alpha: float = 0.1,
    seed: int = 0,
    synonyms: EmbeddingSynonyms | None = None,
) -> list[dict[str, str]]:
    """EDA over labelled rows: returns only the new rows ``{"text", "label", "source": "eda"}``."""
    rng = random.Random(seed)
    out: list[dict[str, str]] = []
    for r in rows:
        for s in eda(str(r["text"]), alpha_sr=alpha, alpha_ri=alpha, alpha_rs=alpha, p_rd=alpha,
                     num_aug=num_aug, seed=rng, synonyms=synonyms):
            out.append({"text": s, "label": str(r["label"]), "source": "eda"})
    return out


__all__ = ["EmbeddingSynonyms", "STOPWORDS", "augment_rows", "default_synonyms", "eda"]
