"""Score embeddings with a trained version: head probabilities blended with current neighbour votes."""

from __future__ import annotations

from enum import StrEnum

import msgspec
import numpy as np

from loupe.indexes import VectorIndex
from loupe.learning.blend import blend
from loupe.learning.heads import Head, head_probabilities
from loupe.learning.labeled import AppLabels
from loupe.learning.neighbours import evidence, vote_targets
from loupe.learning.training_set import LabelRule
from loupe.learning.values import BlendParams, ConceptThreshold


class ConceptScore(msgspec.Struct, frozen=True):
    concept_id: str
    value: float


class Neighbour(msgspec.Struct, frozen=True):
    input_id: str
    similarity: float
    weight: float  # how much its labels counted (exp(sharpness * (similarity - 1)))


class Verdict(StrEnum):
    """Whether to act on a prediction: its concepts against their thresholds, the image against the
    version's scope (loupe.learning.thresholds)."""

    CONFIDENT = "confident"  # at least one concept meets its threshold, and the image is in scope
    UNSURE = "unsure"  # no concept meets its threshold
    OUT_OF_SCOPE = "out_of_scope"  # unlike every labeled example (nearest below the scope similarity)


class Prediction(msgspec.Struct, frozen=True):
    version_id: str
    concepts: list[ConceptScore]  # every concept of the version, best first (before top-k/min filters)
    neighbours: list[Neighbour]
    met: list[str] = []  # the concepts at or above their thresholds, best first
    verdict: Verdict = Verdict.CONFIDENT
    nearest_example: float | None = None  # similarity of the nearest labeled neighbour (None: none found)


class Scorer(msgspec.Struct, frozen=True):
    """What scoring needs of a trained version: its head, blend and label rule."""

    version_id: str
    concept_ids: list[str]
    mutually_exclusive: bool
    blend: BlendParams
    head: Head
    rule: LabelRule
    thresholds: list[ConceptThreshold] = []  # in concept order; [] for versions made before them
    scope_similarity: float = 0.0

    def judge(self, scores: np.ndarray, nearest: float | None) -> tuple[list[str], Verdict]:
        """The concepts met (by score, best first) and the verdict. A mutually exclusive model meets at
        most its top concept."""
        if self.thresholds:
            cut = np.asarray([t.threshold for t in self.thresholds], np.float32)
        else:  # a version from before thresholds: Clarifai's reading (top concept / 0.5)
            cut = np.full(len(scores), 0.0 if self.mutually_exclusive else 0.5, np.float32)
        order = np.argsort(-scores, kind="stable")
        if self.mutually_exclusive:
            order = order[:1]
        met = [self.concept_ids[j] for j in order if scores[j] >= cut[j]]
        if self.scope_similarity and (nearest is None or nearest < self.scope_similarity):
            return met, Verdict.OUT_OF_SCOPE
        return met, Verdict.CONFIDENT if met else Verdict.UNSURE


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
        # The nearest neighbour labeled for the model (background inputs vote, but are no examples).
        nearest = max((s for e, s in zip(entries, sims) if loaded.rule.names_a_concept(e)), default=None)
        met, verdict = loaded.judge(scores, nearest)
        out.append(Prediction(
            version_id=v.version_id,
            concepts=[ConceptScore(v.concept_ids[j], float(scores[j])) for j in order[:c]],
            neighbours=[Neighbour(e.input_id, float(s), float(w)) for e, s, w in zip(entries, sims, weights)],
            met=met, verdict=verdict, nearest_example=nearest))
    return out
