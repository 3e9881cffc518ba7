"""Tiny, learnable data for the training tests (kept small: the whole folder runs in a few minutes on 2 cores)."""

from __future__ import annotations

import random

import pytest

SPORT = ["football", "tennis", "goal", "match", "team", "score", "coach", "league", "player", "stadium"]
FOOD = ["pizza", "bread", "cheese", "soup", "recipe", "dinner", "salad", "pasta", "kitchen", "cake"]
MUSIC = ["guitar", "song", "concert", "album", "singer", "piano", "band", "melody", "drums", "lyrics"]
WORDS = {"sport": SPORT, "food": FOOD, "music": MUSIC}


def make_rows(n_per_class: int, seed: int = 0, classes=("sport", "food")) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for lab in classes:
        for _ in range(n_per_class):
            words = rng.sample(WORDS[lab], 3)
            rows.append({"text": f"the {words[0]} and the {words[1]} with {words[2]}", "label": lab})
    rng.shuffle(rows)
    return rows


@pytest.fixture
def tiny_rows():
    return make_rows(12, seed=1)


@pytest.fixture
def tiny_val():
    return make_rows(6, seed=2)


@pytest.fixture
def fast_cfg():
    """A config that trains a few steps of the bundled MiniLM quickly."""
    from promptmix_core.training import TrainConfig

    return TrainConfig(epochs=4, min_steps=0, max_steps=12, batch_size=8, max_length=16, log_every=2,
                       learning_rate=1e-4, warmup_ratio=0.0, seed=0)


@pytest.fixture
def row_maker():
    """``make_rows(n_per_class, seed=0, classes=("sport", "food"))``."""
    return make_rows
