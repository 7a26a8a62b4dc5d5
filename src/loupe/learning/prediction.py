"""Score embeddings with a trained version: head probabilities blended with current neighbour votes."""

from __future__ import annotations

from enum import StrEnum

import msgspec
import numpy as np

from loupe.indexes import VectorIndex
from loupe.learning.blend import blend
from loupe.learning.heads import Head, head_probabilities
from loupe.learning.labeled import AppLabels, LabelEntry
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


Neighbours = list[tuple[LabelEntry, float]]  # a row's relevant nearest inputs, nearest first


def neighbours(loaded: Scorer, vectors: np.ndarray, labels: AppLabels, index: VectorIndex,
               allow: np.ndarray | None, k: int | None = None) -> list[Neighbours]:
    """Each row's nearest inputs that take part for the model (`allow`: those that may; None: all).
    Neighbour votes are weighted by similarity, so a shallower re-ranking (in a compressed index) does:
    a near-duplicate is found either way, and predictions stay ~2 ms at a million inputs."""
    if allow is not None and len(allow) == 0:
        return [[] for _ in range(len(vectors))]
    hits = index.search(vectors, k or loaded.blend.k, allow=allow, candidates=NEIGHBOUR_CANDIDATES)
    rows = []
    for hit in hits:
        found = []
        for seq, sim in zip(hit.ids.tolist(), hit.scores.tolist()):
            entry = labels.entries.get(seq)
            if entry is not None and loaded.rule.relevant(entry):
                found.append((entry, sim))
        rows.append(found)
    return rows


def blended(loaded: Scorer, vectors: np.ndarray, rows: list[Neighbours]) -> np.ndarray:
    """Confidences [rows, concepts]: the head blended with the rows' neighbour votes (the first k of
    each). The votes of every row are gathered into one [rows, k, concepts] array."""
    v, params = loaded, loaded.blend
    n, c = len(vectors), len(v.concept_ids)
    scores = head_probabilities(loaded.head.logits(vectors), v.mutually_exclusive, params.temperature)
    rows = [r[:params.k] for r in rows]
    width = max((len(r) for r in rows), default=0)
    if width:
        pos, neg = loaded.rule.matrices([e for r in rows for e, _ in r])
        flat_votes, flat_voting = vote_targets(pos, neg, v.mutually_exclusive)
        sims = np.full((n, width), -1.0, np.float32)
        votes = np.zeros((n, width, c), np.float32)
        voting = np.zeros((n, width, c), bool)
        at = 0
        for i, r in enumerate(rows):  # empty slots do not vote
            m = len(r)
            sims[i, :m] = [sim for _, sim in r]
            votes[i, :m], voting[i, :m] = flat_votes[at:at + m], flat_voting[at:at + m]
            at += m
        scores = blend(scores, evidence(sims, votes, voting, sharpness=params.sharpness), params.head_weight)
    return np.clip(scores, 0.0, 1.0)


def decisions(loaded: Scorer, scores: np.ndarray) -> list[tuple[str, ...]]:
    """What each row answers: the top concept of a mutually exclusive model, the concepts meeting their
    thresholds of a multi-label one."""
    if loaded.mutually_exclusive:
        return [(loaded.concept_ids[j],) for j in scores.argmax(axis=1).tolist()]
    cut = (np.asarray([t.threshold for t in loaded.thresholds], np.float32) if loaded.thresholds
           else np.full(scores.shape[1], 0.5, np.float32))
    return [tuple(loaded.concept_ids[j] for j in np.flatnonzero(row)) for row in scores >= cut]


def predict(loaded: Scorer, vectors: np.ndarray, labels: AppLabels, index: VectorIndex,
            allow: np.ndarray | None) -> list[Prediction]:
    """`allow`: the inputs that count as neighbours for this model (None: all of the app's)."""
    rows = neighbours(loaded, vectors, labels, index, allow)
    scores = blended(loaded, vectors, rows)
    sharpness = loaded.blend.sharpness
    order = np.argsort(-scores, axis=1, kind="stable")
    out = []
    for i, r in enumerate(rows):
        row_scores = scores[i]
        # The nearest neighbour labeled for the model (background inputs vote, but are no examples).
        nearest = max((sim for e, sim in r if loaded.rule.names_a_concept(e)), default=None)
        met, verdict = loaded.judge(row_scores, nearest)
        out.append(Prediction(
            version_id=loaded.version_id,
            concepts=[ConceptScore(loaded.concept_ids[j], float(row_scores[j])) for j in order[i].tolist()],
            neighbours=[Neighbour(e.input_id, sim, float(np.exp(sharpness * (min(max(sim, -1.0), 1.0) - 1.0))))
                        for e, sim in r],
            met=met, verdict=verdict, nearest_example=nearest))
    return out
