"""Do per-concept thresholds deliver the precision they promise? Train a version on K labeled photos per
class, let it choose each concept's threshold for a target precision from its held-out validation (as
Loupe's trainer does), then predict unseen photos of the same classes and compare, per concept, the
precision the version expected at its threshold with the precision observed there.

Caltech-101 (101 classes; K per class labeled, up to 20 others per class held out) and Clothing-10 (K of
its train split labeled, its test split held out); EfficientNet-Lite2 vectors embedded once through Loupe
(benchmarks/.cache). Predictions blend head and neighbours exactly as `loupe.learning.prediction` does
(exact neighbour search over the labeled photos). Both model kinds: mutually exclusive, and multi-label
(open, every other class a negative).

    python benchmarks/thresholds.py --seeds 3 --first-seed 0          # tuning seeds (the rule's choice)
    python benchmarks/thresholds.py --seeds 5 --first-seed 100 --name thresholds   # reported

Reported per dataset, kind and K: the support-weighted mean expected precision over concepts whose
threshold was measured and reachable, the observed precision over the same predictions, their gap, the
share of held-out photos answered "unsure", and the observed precision of the confident answers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_result  # noqa: E402
from embedded_datasets import embedded  # noqa: E402

from loupe.learning.blend import blend  # noqa: E402
from loupe.learning.dot_products import pairwise_dots  # noqa: E402
from loupe.learning.heads import head_probabilities  # noqa: E402
from loupe.learning.neighbours import evidence, vote_targets  # noqa: E402
from loupe.learning.training import fit_version  # noqa: E402
from loupe.learning.training_set import TrainingSet  # noqa: E402

TARGET = 0.9
SHOTS = (5, 10, 20)
HELD_OUT_PER_CLASS = 20


def split(dataset: str, shots: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    data = embedded(dataset)
    rng = np.random.default_rng(seed)
    keep = [i for i, c in enumerate(data.classes) if c != "BACKGROUND_Google"]
    train, test = [], []
    for c in keep:
        pool = np.flatnonzero(data.label == c)
        if dataset == "clothing10":
            train += list(rng.permutation(pool[data.split[pool] == "train"])[:shots])
            test += list(pool[data.split[pool] == "test"])
        else:
            pool = rng.permutation(pool)
            train += list(pool[:shots])
            test += list(pool[shots:shots + HELD_OUT_PER_CLASS])
    remap = {c: i for i, c in enumerate(keep)}
    label = np.asarray([remap.get(int(c), -1) for c in data.label])
    train_rows, test_rows = np.asarray(train), np.asarray(test)
    return data.x[train_rows], label[train_rows], data.x[test_rows], label[test_rows], len(keep)


def predict(fitted, x: np.ndarray, pos: np.ndarray, neg: np.ndarray, q: np.ndarray, me: bool) -> np.ndarray:
    params = fitted.blend
    head = head_probabilities(fitted.head.logits(q), me, params.temperature)
    sims = pairwise_dots(q, x)
    k = min(params.k, len(x))
    top = np.argsort(-sims, axis=1)[:, :k]
    votes, voting = vote_targets(pos, neg, me)
    ev = evidence(np.take_along_axis(sims, top, axis=1), votes[top], voting[top], sharpness=params.sharpness)
    return np.clip(blend(head, ev, params.head_weight), 0, 1)


def one_run(dataset: str, shots: int, seed: int, me: bool) -> dict:
    x, y, q, yq, c = split(dataset, shots, seed)
    pos = np.zeros((len(y), c), bool)
    pos[np.arange(len(y)), y] = True
    ts = TrainingSet(seqs=np.arange(len(y)), input_ids=[str(i) for i in range(len(y))], positive=pos,
                     negative=~pos, explicit_negative=np.zeros_like(pos))
    concepts = [str(j) for j in range(c)]
    fitted = fit_version(x, ts, concepts, me, seed=seed, target_precision=[TARGET] * c, pseudo_labels=False)
    scores = predict(fitted, x, pos, ~pos, q, me)
    top = scores.argmax(axis=1)
    expected_w = observed_tp = observed_n = 0.0
    met = np.zeros(len(q), bool)
    measured = 0
    per_concept: list[tuple[float, int, int, int]] = []
    for j, t in enumerate(fitted.thresholds):
        chosen = (top == j) if me else np.ones(len(q), bool)
        hit = chosen & (scores[:, j] >= t.threshold)
        met |= hit
        if t.precision is None or not t.reachable or not hit.any():
            continue
        measured += 1
        expected_w += t.precision * hit.sum()
        per_concept.append((t.precision, t.support, int(hit.sum()), int((yq[hit] == j).sum())))
        observed_tp += (yq[hit] == j).sum()
        observed_n += hit.sum()
    return {"expected": expected_w / max(observed_n, 1), "observed": observed_tp / max(observed_n, 1),
            "answers": int(observed_n), "concepts_measured": measured, "concepts": c,
            "unsure_share": float(1 - met.mean()), "per_concept": per_concept}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=100)
    ap.add_argument("--name", default="")
    args = ap.parse_args()
    rows = []
    for dataset in ("clothing10", "caltech101"):
        for me in (True, False):
            for shots in SHOTS:
                runs = [one_run(dataset, shots, s, me) for s in range(args.first_seed, args.first_seed + args.seeds)]
                expected = float(np.mean([r["expected"] for r in runs]))
                observed = float(np.mean([r["observed"] for r in runs]))
                row = {"dataset": dataset, "kind": "mutually exclusive" if me else "multi-label", "shots": shots,
                       "expected": round(expected, 3), "observed": round(observed, 3),
                       "gap": round(observed - expected, 3),
                       "gap_per_seed": [round(r["observed"] - r["expected"], 3) for r in runs],
                       "answers": int(np.mean([r["answers"] for r in runs])),
                       "concepts_measured": float(np.mean([r["concepts_measured"] for r in runs])),
                       "unsure_share": round(float(np.mean([r["unsure_share"] for r in runs])), 3)}
                rows.append(row)
                print(row, flush=True)
    if args.name:
        write_result(args.name, {"machine": machine(), "target": TARGET, "seeds": list(
            range(args.first_seed, args.first_seed + args.seeds)), "rows": rows})


if __name__ == "__main__":
    main()
