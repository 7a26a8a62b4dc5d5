"""Score embeddings with a trained version: head probabilities blended with current neighbour votes."""

from __future__ import annotations

import msgspec
import numpy as np

from loupe.indexes import VectorIndex
from loupe.learning.blend import blend
from loupe.learning.heads import Head, head_probabilities
from loupe.learning.labeled import AppLabels
from loupe.learning.neighbours import evidence, vote_targets
from loupe.learning.training_set import LabelRule
from loupe.learning.values import BlendParams


class ConceptScore(msgspec.Struct, frozen=True):
    concept_id: str
    value: float


class Neighbour(msgspec.Struct, frozen=True):
    input_id: str
    similarity: float
    weight: float  # how much its labels counted (exp(sharpness * (similarity - 1)))


class Prediction(msgspec.Struct, frozen=True):
    version_id: str
    concepts: list[ConceptScore]  # every concept of the version, best first (before top-k/min filters)
    neighbours: list[Neighbour]


class Scorer(msgspec.Struct, frozen=True):
    """What scoring needs of a trained version: its head, blend and label rule."""

    version_id: str
    concept_ids: list[str]
    mutually_exclusive: bool
    blend: BlendParams
    head: Head
    rule: LabelRule


NEIGHBOUR_CANDIDATES = 100


def predict(loaded: Scorer, vectors: np.ndarray, labels: AppLabels, index: VectorIndex,
            allow: np.ndarray | None) -> list[Prediction]:
    """`allow`: the inputs that count as neighbours for this model (None: all of the app's)."""
    v, params = loaded, loaded.blend
    head_p = head_probabilities(loaded.head.logits(vectors), v.mutually_exclusive, params.temperature)
    no_neighbours = allow is not None and len(allow) == 0
    # Neighbour votes are weighted by similarity, so a shallower re-ranking (in a compressed index) does:
    # a near-duplicate is found either way, and predictions stay ~2 ms at a million inputs.
    hits = None if no_neighbours else index.search(vectors, params.k, allow=allow, candidates=NEIGHBOUR_CANDIDATES)
    out = []
    for row in range(len(vectors)):
        entries, sims = [], []
        if hits is not None:
            for seq, sim in zip(hits[row].ids.tolist(), hits[row].scores.tolist()):
                entry = labels.entries.get(seq)
                if entry is not None and loaded.rule.relevant(entry):
                    entries.append(entry)
                    sims.append(sim)
        c = len(v.concept_ids)
        if entries:
            pos, neg = loaded.rule.matrices(entries)
            votes, voting = vote_targets(pos, neg, v.mutually_exclusive)
            sim_arr = np.asarray(sims, np.float32)[None, :]
            ev = evidence(sim_arr, votes[None], voting[None], sharpness=params.sharpness)
            scores = blend(head_p[row:row + 1], ev, params.head_weight)[0]
            weights = np.exp(params.sharpness * (np.clip(sim_arr[0], -1, 1) - 1.0))
        else:
            scores, weights = head_p[row], np.zeros(0)
        scores = np.clip(scores, 0.0, 1.0)
        order = np.argsort(-scores, kind="stable")
        out.append(Prediction(
            version_id=v.version_id,
            concepts=[ConceptScore(v.concept_ids[j], float(scores[j])) for j in order[:c]],
            neighbours=[Neighbour(e.input_id, float(s), float(w)) for e, s, w in zip(entries, sims, weights)]))
    return out
