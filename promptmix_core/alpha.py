"""The mixup ratio: alpha = 0.5 + 0.5 * Beta(5, 2), rounded to 0.05 (PromptMix, Sahu et al. 2023).

The one formula used by generation (one draw per prompt) and by the Generate page's preview."""

from __future__ import annotations

import random

ALPHA_A, ALPHA_B = 5, 2
ALPHA_STEP = 0.05
ALPHA_BINS = tuple(round(0.5 + ALPHA_STEP * i, 2) for i in range(11))  # 0.50, 0.55, ..., 1.00


def sample_alpha(rng: random.Random) -> float:
    """alpha = 0.5 + 0.5 * Beta(5, 2), rounded to 0.05."""
    return round((0.5 + 0.5 * rng.betavariate(ALPHA_A, ALPHA_B)) * 20) / 20


def alpha_preview(n: int, seed: int = 0) -> list[float]:
    """``n`` draws of the same distribution (for showing what to expect before generating)."""
    rng = random.Random(f"alpha-preview|{seed}")
    return [sample_alpha(rng) for _ in range(max(0, int(n)))]


__all__ = ["ALPHA_BINS", "alpha_preview", "sample_alpha"]
