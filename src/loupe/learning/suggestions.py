""""Label these next": which unlabeled inputs teach a model most per label a person gives.

With a handful of labels, what a model lacks is coverage: whole regions of the app's photos (often
whole concepts) have no label nearby, and the most uncertain inputs are mostly odd ones out. So the
pool of unlabeled inputs is clustered (k-means, as many clusters as labels there will be), clusters
that already hold a labeled input count as covered, and each uncovered cluster, largest first, offers
its most typical member (nearest its centre). Uncovered clusters go in order of size x (the model's
mean doubt there)^4: a big cluster the model already answers confidently teaches it little. When every
cluster is covered, the rest go by the model's uncertainty (smallest margin between its two best
concepts) among typical inputs.
"""

from __future__ import annotations

import numpy as np

# Unlabeled inputs considered (a random sample beyond) and the points k-means is fitted on: they bound a
# call's memory (20,000 x 1280 float32 = 100 MB) and time (k-means on 10,000 of 18,000 points with
# 2,200 clusters: 1.8 s instead of 2.7 s on 2 cores). Every pool input is still assigned to a cluster.
MAX_POOL = 20_000
MAX_KMEANS_POINTS = 10_000
MAX_CLUSTERS = 2_000
# How strongly doubt outweighs size when ordering clusters: 4 beat 1 and 2 in the simulated loop
# (benchmarks/suggestions.py) on 15 used seeds of both datasets; seeds 300-309 were never used to choose.
DOUBT_EMPHASIS = 4


def suggest(pool: np.ndarray, labeled: np.ndarray, count: int, margins: np.ndarray | None = None,
            seed: int = 0) -> np.ndarray:
    """Indices into `pool` (unit vectors of unlabeled inputs), best first. `labeled`: unit vectors of
    the labeled ones; `margins`: the model's top-1 minus top-2 probability per pool row, if trained."""
    import faiss

    n = len(pool)
    count = min(count, n)
    if count <= 0:
        return np.zeros(0, np.int64)
    rng = np.random.default_rng(seed)
    pool = np.ascontiguousarray(pool, np.float32)
    k = int(min(MAX_CLUSTERS, n, len(labeled) + count))
    kmeans = faiss.Kmeans(pool.shape[1], k, niter=15, seed=int(rng.integers(1 << 30)), spherical=True,
                          min_points_per_centroid=1, max_points_per_centroid=max(1, MAX_KMEANS_POINTS // k))
    kmeans.train(pool)
    _, assign = kmeans.index.search(pool, 1)
    assign = assign[:, 0]
    covered = set()
    if len(labeled):
        _, owner = kmeans.index.search(np.ascontiguousarray(labeled, np.float32), 1)
        covered = set(owner[:, 0].tolist())
    raw = np.asarray(kmeans.centroids, np.float32)
    centroids = raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)
    typical = (pool * centroids[assign]).sum(axis=1)  # near its cluster's centre: a typical member
    sizes = np.bincount(assign, minlength=k)
    # Big clusters the model is unsure about first: a big cluster it already answers confidently
    # (often a sub-mode of a concept with many labels) teaches it little.
    doubt = 1.0 - margins if margins is not None else np.ones(n)
    weight = sizes * (np.bincount(assign, weights=doubt, minlength=k) / np.maximum(sizes, 1)) ** DOUBT_EMPHASIS
    picks: list[int] = []
    for cluster in np.argsort(-weight, kind="stable"):
        if len(picks) == count:
            break
        if cluster in covered or sizes[cluster] == 0:
            continue
        members = np.flatnonzero(assign == cluster)
        picks.append(int(members[np.argmax(typical[members])]))
    if len(picks) < count:  # everything is covered: the model's least sure answers, typical ones first
        taken = np.zeros(n, bool)
        taken[picks] = True
        order = np.argsort(-(doubt + 0.25 * typical), kind="stable")
        picks += [int(i) for i in order if not taken[i]][:count - len(picks)]
    return np.asarray(picks, np.int64)

