""""Label these next" against random picks, in a simulated labeling loop: start with one label per
concept, then 5 rounds that each label as many more inputs as there are concepts, picked by Loupe's
suggestions or at random from the app's unlabeled inputs; after each round Loupe trains and is scored
on held-out photos. Same starting labels and test photos for both. By default each train uses the
labels only and is scored by its head; `--self-training` trains as production does by default (also
self-training from the app's unlabeled inputs) and scores by the blended predictor.

Apps: Caltech-101 (every photo but 20 per class held out, so the unlabeled pool is as skewed as the
dataset: 800 airplanes, 31 of the rarest) and Clothing-10 (train split; its test split held out).

    python benchmarks/suggestions.py [--seeds 5] [--first-seed 100]
    python benchmarks/suggestions.py --seeds 10 --first-seed 300 --name suggestions_seeds_300   # docs/models.md
    python benchmarks/suggestions.py --seeds 5 --first-seed 300 --datasets clothing10 --self-training \
        --name suggestions_self_training_seeds_300
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402
from embedded_datasets import embedded  # noqa: E402
from few_shot import blended  # noqa: E402

from loupe.learning.heads import head_probabilities  # noqa: E402
from loupe.learning.suggestions import suggest  # noqa: E402
from loupe.learning.training import fit_version  # noqa: E402
from loupe.learning.training_set import TrainingSet  # noqa: E402

ROUNDS = 5


def split(dataset: str, seed: int):
    data = embedded(dataset)
    rng = np.random.default_rng(seed)
    keep = [i for i, c in enumerate(data.classes) if c != "BACKGROUND_Google"]
    remap = {c: i for i, c in enumerate(keep)}
    pool, test = [], []
    for c in keep:
        rows = np.flatnonzero(data.label == c)
        if dataset == "clothing10":
            pool += list(rows[data.split[rows] == "train"])
            test += list(rows[data.split[rows] == "test"])
        else:
            rows = rng.permutation(rows)
            test += list(rows[:20])
            pool += list(rows[20:])
    y = np.asarray([remap.get(c, -1) for c in data.label])
    return data.x, y, np.asarray(pool), np.asarray(test), len(keep)


def train_and_score(x, y, labeled, test, c, unlabeled=None):
    """`unlabeled`: rows of the app's unlabeled inputs, to self-train from and score as production answers."""
    positive = np.eye(c, dtype=bool)[y[labeled]]
    ts = TrainingSet(np.arange(len(labeled), dtype=np.int64), [str(i) for i in labeled], positive, ~positive,
                     np.zeros_like(positive))
    if unlabeled is None:
        fitted = fit_version(x[labeled], ts, [str(j) for j in range(c)], True)
        return fitted, float((fitted.head.logits(x[test]).argmax(1) == y[test]).mean())
    fitted = fit_version(x[labeled], ts, [str(j) for j in range(c)], True, unlabeled=x[unlabeled])
    scores = blended(fitted, x[labeled], y[labeled], x[test], c)
    return fitted, float((scores.argmax(1) == y[test]).mean())


def run(dataset: str, seed: int, method: str, self_training: bool = False) -> list[float]:
    x, y, pool, test, c = split(dataset, seed)
    rng = np.random.default_rng(seed)
    labeled = [int(rng.choice(pool[y[pool] == j])) for j in range(c)]  # one per concept to start
    scores = []

    def trained() -> tuple:
        return train_and_score(x, y, labeled, test, c, np.setdiff1d(pool, labeled) if self_training else None)

    for round_ in range(ROUNDS):
        fitted, _ = trained()
        unlabeled = np.setdiff1d(pool, labeled)
        if method == "random":
            picks = rng.choice(unlabeled, c, replace=False)
        else:
            p = head_probabilities(fitted.head.logits(x[unlabeled]), True, fitted.blend.temperature)
            top2 = np.sort(p, axis=1)[:, -2:]
            picks = unlabeled[suggest(x[unlabeled], x[labeled], c, top2[:, 1] - top2[:, 0], seed=seed + round_)]
        labeled += [int(i) for i in picks]
        scores.append(trained()[1])
    return scores


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--name", default="suggestions")
    parser.add_argument("--datasets", default="caltech101,clothing10")
    parser.add_argument("--self-training", action="store_true",
                        help="every train also self-trains from the app's unlabeled inputs (production's default)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    rows = []
    for dataset in args.datasets.split(","):
        result = {}
        for method in ("random", "suggestions"):
            per_seed = [run(dataset, s, method, args.self_training)
                        for s in range(args.first_seed, args.first_seed + args.seeds)]
            result[method] = [round(float(v), 4) for v in np.mean(per_seed, axis=0)]
            result[method + "_final_per_seed"] = [round(r[-1], 4) for r in per_seed]
        gap = result["suggestions"][-1] - result["random"][-1]
        row = {"dataset": dataset, **result, "gain_after_5_rounds_points": round(100 * gap, 2)}
        rows.append(row)
        print(row, flush=True)
    path = write_result(args.name, {"rounds": ROUNDS, "self_training": args.self_training, "rows": rows})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
