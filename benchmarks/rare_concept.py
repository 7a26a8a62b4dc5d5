"""A rare concept in an app of unlabeled photos ("defect" among normal ones): the open multi-label model
as Loupe trains it now (what the unlabeled inputs are is chosen by validation) next to the rule it had
before (every unlabeled input a negative of every concept), on the same splits.

Caltech-101 (BACKGROUND_Google left out): per draw one class is the rare concept, K of its photos are
labeled, every other photo of the dataset sits in the app unlabeled (the rest of the rare class
among them). Two models:
- `one concept`: the model knows only the rare concept (no input is labeled with anything else);
- `with a labeled common concept`: the model also has a second class with 20 labeled photos.
Scored on every unlabeled photo (transductive, as an app's own photos are searched): average precision
of the rare concept's score, and F1 at 0.5. Each draw's prediction blends the head with neighbours as
production does (unlabeled neighbours vote "no" only where they are negatives).

    python benchmarks/rare_concept.py [--draws 20] [--first-seed 0]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402
from embedded_datasets import embedded  # noqa: E402

from loupe.learning.blend import blend  # noqa: E402
from loupe.learning.heads import head_probabilities  # noqa: E402
from loupe.learning.metrics import average_precision, precision_recall_f1  # noqa: E402
from loupe.learning.neighbours import evidence, vote_targets  # noqa: E402
from loupe.learning.training import fit_version  # noqa: E402
from loupe.learning.training_set import TrainingSet, UnlabeledRule  # noqa: E402

SHOTS = (2, 5, 10)
COMMON_LABELS = 20


def scores(fitted, x_lab, pos, neg, x_pool, background: bool) -> np.ndarray:
    """The rare concept's blended score on every pool photo (its neighbours: the labeled inputs, and
    the pool's other photos where they are negatives; a photo is not its own neighbour)."""
    p = fitted.blend
    head = head_probabilities(fitted.head.logits(x_pool), False, p.temperature)
    s_lab = x_pool @ x_lab.T
    if background:
        s_pool = x_pool @ x_pool.T
        np.fill_diagonal(s_pool, -2.0)
        sims = np.concatenate([s_lab, s_pool], axis=1)
        pos = np.concatenate([pos, np.zeros((len(x_pool), pos.shape[1]), bool)])
        neg = np.concatenate([neg, np.ones((len(x_pool), pos.shape[1]), bool)])
    else:
        sims = s_lab
    k = min(p.k, sims.shape[1])
    nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    votes, voting = vote_targets(pos, neg, False)
    ev = evidence(np.take_along_axis(sims, nearest, 1), votes[nearest], voting[nearest], sharpness=p.sharpness)
    return blend(head, ev, p.head_weight)[:, 0]


def run(x, label, rare, common, shots, rng):
    rare_rows = rng.permutation(np.flatnonzero(label == rare))
    labeled = list(rare_rows[:shots])
    concepts = 1
    if common is not None:
        labeled += list(rng.permutation(np.flatnonzero(label == common))[:COMMON_LABELS])
        concepts = 2
    labeled = np.asarray(labeled)
    pool_rows = np.setdiff1d(np.arange(len(x)), labeled)
    pos = np.zeros((len(labeled), concepts), bool)
    pos[:shots, 0] = True
    if concepts == 2:
        pos[shots:, 1] = True
    neg = ~pos
    x_lab, x_pool = x[labeled], x[pool_rows]
    truth = label[pool_rows] == rare
    ids = [str(i) for i in range(len(labeled))]
    out = {}
    # Now: the unlabeled photos are offered to the train, which chooses what they are.
    ts = TrainingSet(np.arange(len(labeled), dtype=np.int64), ids, pos, neg, np.zeros_like(pos))
    fitted = fit_version(x_lab, ts, [str(j) for j in range(concepts)], False, unlabeled=x_pool, background=True)
    bg = fitted.self_training.rule == UnlabeledRule.NEGATIVES
    out["now"] = scores(fitted, x_lab, pos, neg, x_pool, bg)
    out["now_rule"] = str(fitted.self_training.rule) + (f" x{fitted.self_training.strength}"
                                                         if fitted.self_training.strength else "")
    # Before: every unlabeled photo a negative of every concept, no self-training.
    all_x = np.concatenate([x_lab, x_pool])
    all_pos = np.concatenate([pos, np.zeros((len(x_pool), concepts), bool)])
    ts_before = TrainingSet(np.arange(len(all_x), dtype=np.int64), [str(i) for i in range(len(all_x))], all_pos,
                            ~all_pos, np.zeros_like(all_pos))
    before = fit_version(all_x, ts_before, [str(j) for j in range(concepts)], False)
    out["before"] = scores(before, x_lab, pos, neg, x_pool, True)
    result = {}
    for name in ("now", "before"):
        s = out[name]
        _, _, f1 = precision_recall_f1(truth, s >= 0.5)
        result[name] = {"ap": float(average_precision(truth, s)), "f1": float(f1 or 0.0)}
    result["now_rule"] = out["now_rule"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--name", default="rare_concept")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    data = embedded("caltech101")
    keep = np.asarray([i for i, c in enumerate(data.classes) if c != "BACKGROUND_Google"])
    rows_in = np.isin(data.label, keep)
    x, label = data.x[rows_in], data.label[rows_in]
    rows = []
    for model in ("one concept", "with a labeled common concept"):
        for shots in SHOTS:
            per = []
            for draw in range(args.first_seed, args.first_seed + args.draws):
                rng = np.random.default_rng(draw)
                rare, common = rng.choice(keep, 2, replace=False)
                per.append(run(x, label, rare, common if model != "one concept" else None, shots, rng))
            row = {"model": model, "shots": shots, "draws": len(per)}
            for name in ("now", "before"):
                for metric in ("ap", "f1"):
                    row[f"{name}_{metric}"] = round(float(np.mean([p[name][metric] for p in per])), 4)
            gain = np.asarray([p["now"]["ap"] - p["before"]["ap"] for p in per])
            row["ap_gain"] = {"mean": round(float(gain.mean()), 4), "min": round(float(gain.min()), 4)}
            rules: dict[str, int] = {}
            for p in per:
                rules[p["now_rule"]] = rules.get(p["now_rule"], 0) + 1
            row["rules"] = rules
            rows.append(row)
            print(row, flush=True)
    seeds = [args.first_seed, args.first_seed + args.draws - 1]
    print(f"written to {write_result(args.name, {'seeds': seeds, 'rows': rows})}")


if __name__ == "__main__":
    main()
