"""Copies of one photo among a model's examples: the same bytes (content hash) or a near duplicate.

Cross-validation that puts a photo in one fold and its copy in another scores the model on what it
was trained on: a newcomer's app that uploaded its folder twice showed near-perfect metrics. Every
fold assignment (evaluation, blend choice, self-training's validation) keeps copies together.
"""

from __future__ import annotations

import numpy as np

from loupe.learning.dot_products import pairwise_dots

# Re-encoded or resized copies score 0.9-0.95 with EfficientNet-Lite2 and distinct photos < 0.75
# (loupe.advice); 0.98 keeps only what is nearly the same image (a crop of a few pixels, a re-save).
NEAR_DUPLICATE_SIMILARITY = 0.98
# The similarity check is quadratic: 5,000 rows x 1,280-d is ~0.15 s here; beyond, content hashes only.
MAX_NEAR_DUPLICATE_ROWS = 5000
BLOCK = 1024


def copy_groups(x: np.ndarray, shas: list[str] | None = None, *,
                threshold: float = NEAR_DUPLICATE_SIMILARITY) -> np.ndarray:
    """Per row, the first row of its group of copies (itself when it has none): int64 [n]."""
    n = len(x)
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    def join(a: int, b: int) -> None:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    pairs: list[tuple[int, int]] = []
    first: dict[str, int] = {}
    for i, sha in enumerate(shas or []):
        if sha and first.setdefault(sha, i) != i:
            pairs.append((first[sha], i))
    if 1 < n <= MAX_NEAR_DUPLICATE_ROWS:
        for start in range(0, n, BLOCK):
            sims = pairwise_dots(x[start:start + BLOCK], x)
            pairs += [(start + int(r), int(c)) for r, c in zip(*np.nonzero(sims >= threshold)) if start + r < c]
    if not pairs:
        return parent
    for a, b in pairs:
        join(a, b)
    return np.asarray([root(i) for i in range(n)], np.int64)

