"""What a version would change, before it serves: per-concept held-out metrics of both versions side by
side, and the stored inputs whose answer differs, with both answers and their neighbours.

Computed from stored vectors (nothing is re-embedded), through the same predictions clients get (head
blended with the current labels' neighbours), for both versions over the same inputs. An answer is the
top concept of a mutually exclusive model, or the set of concepts meeting their thresholds of a
multi-label one. Every labeled input of the model is compared; unlabeled ones up to MAX_COMPARED in all
(a random sample beyond: the report says how many it compared and scales its count), which keeps a
report of a 100,000-input app within 2 s: 1.6 s with 2,000 labeled inputs (benchmarks/changes.py, AMD
EPYC, 2 cores). Both versions share one neighbour search when their label rule is the same, and only
the listed inputs are predicted in full.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import msgspec
import numpy as np

from loupe.apps.context import AppContext
from loupe.errors import InvalidArgument, ModelNotTrained
from loupe.learning.prediction import Prediction
from loupe.learning.values import ConceptThreshold
from loupe.models.predictor import CustomPredictor
from loupe.models.registry import ModelRegistry
from loupe.store.records import ModelVersion, Serving, VersionStatus

MAX_COMPARED = 10_000
MAX_LISTED = 100
CHUNK = 2048
REPORTS_KEPT = 16


class Answer(msgspec.Struct, frozen=True):
    decision: list[str]  # top concept (mutually exclusive) or concepts meeting their thresholds
    concepts: list[tuple[str, float]]  # the three best, with their confidences


class ChangedInput(msgspec.Struct, frozen=True):
    input_id: str
    before: Answer
    after: Answer
    change: float  # the largest change of any concept's confidence
    neighbours: list[tuple[str, float]]  # the new version's nearest labeled inputs (id, similarity)
    labels: list[str]  # the input's own positive labels among the model's concepts


class ConceptSideBySide(msgspec.Struct, frozen=True):
    concept_id: str
    before: ConceptThreshold | None
    after: ConceptThreshold | None
    before_average_precision: float | None = None  # from an evaluation, when the version has one
    after_average_precision: float | None = None


class ChangeReport(msgspec.Struct, frozen=True):
    model_id: str
    version_id: str
    against: str
    compared: int  # inputs compared
    inputs: int  # inputs the app holds
    changed: int  # among the compared
    changed_estimate: int  # scaled to every input when a sample was compared
    concepts: list[ConceptSideBySide]
    changes: list[ChangedInput]  # the largest changes first, at most MAX_LISTED


class Changes:
    def __init__(self, context: AppContext, registry: ModelRegistry, predictor: CustomPredictor) -> None:
        self._context = context
        self._registry = registry
        self._predictor = predictor
        self._lock = threading.Lock()
        self._reports: OrderedDict[tuple, ChangeReport] = OrderedDict()

    def report(self, app_id: str, model_id: str, version_id: str | None = None,
               against: str | None = None) -> ChangeReport:
        """`version_id` (default: the newest trained one) against `against`: by default the published
        version of a model that publishes, else the trained version before this one."""
        app = self._context.sync(app_id)
        model = self._registry.get(app_id, model_id)
        if version_id is None:
            trained = [v for v in self._registry.versions(app_id, model_id, per_page=1000)
                       if v.status is VersionStatus.TRAINED]
            if not trained:
                raise ModelNotTrained(f"model {model_id!r} has no trained version yet: train it first")
            version_id = trained[0].id
        after = self._registry.version(app_id, model_id, version_id)
        if after.status is not VersionStatus.TRAINED:
            raise ModelNotTrained(f"version {version_id!r} is {after.status}; only trained versions have changes")
        before = self._registry.version(app_id, model_id, against) if against else self._default_against(
            app_id, model_id, after, model.published if model.serving is Serving.PUBLISHED else "")
        if before.status is not VersionStatus.TRAINED:
            raise ModelNotTrained(f"version {before.id!r} is {before.status}; compare with a trained version")
        key = (app_id, model_id, after.id, before.id, app.generation)
        with self._lock:
            if key in self._reports:
                self._reports.move_to_end(key)
                return self._reports[key]
        report = self._compute(app_id, after, before)
        with self._lock:
            self._reports[key] = report
            while len(self._reports) > REPORTS_KEPT:
                self._reports.popitem(last=False)
        return report

    def _default_against(self, app_id: str, model_id: str, after: ModelVersion, published: str) -> ModelVersion:
        if published and published != after.id:
            return self._registry.version(app_id, model_id, published)
        older = [v for v in self._registry.versions(app_id, model_id, per_page=1000)
                 if v.status is VersionStatus.TRAINED and v.seq < after.seq]
        if not older:
            raise InvalidArgument(f"version {after.id!r} is the model's first trained version: nothing to compare "
                                  "it with (name one with `against`)")
        return older[0]

    def _compute(self, app_id: str, after: ModelVersion, before: ModelVersion) -> ChangeReport:
        app = self._context.sync(app_id)
        labels = self._context.labels.get(app_id)
        concepts = set(after.concept_ids) | set(before.concept_ids)
        entries = list(labels.entries.items())
        labeled = np.fromiter((s for s, e in entries if not e.positives.isdisjoint(concepts)
                               or not e.negatives.isdisjoint(concepts)), np.int64)
        others = np.fromiter((s for s, e in entries if e.positives.isdisjoint(concepts)
                              and e.negatives.isdisjoint(concepts)), np.int64)
        room = max(0, MAX_COMPARED - len(labeled))
        if len(others) > room:
            others = np.sort(np.random.default_rng(0).choice(others, room, replace=False))
        seqs = np.concatenate([labeled, others])
        changed_rows: list[tuple[float, int]] = []  # (change, row) of inputs whose answer moves
        changed_labeled = 0
        for start in range(0, len(seqs), CHUNK):
            chunk = seqs[start:start + CHUNK]
            x = self._context.embeddings_of(app, chunk)
            (old, old_says), (new, new_says) = self._predictor.compare_vectors(
                app, after.model_id, (before.id, after.id), x)
            change = _changes(old, before.concept_ids, new, after.concept_ids)
            for offset, (a, b) in enumerate(zip(old_says, new_says)):
                if a != b:
                    changed_rows.append((float(change[offset]), start + offset))
                    changed_labeled += start + offset < len(labeled)
        # Both answers in full (neighbours too) for the inputs listed: the largest changes first.
        changed_rows.sort(key=lambda t: (-t[0], labels.entries[int(seqs[t[1]])].input_id))
        listed = seqs[[row for _, row in changed_rows[:MAX_LISTED]]]
        x = self._context.embeddings_of(app, listed)
        old_p = self._predictor.predict_vectors(app, before.model_id, x, before.id) if len(listed) else []
        new_p = self._predictor.predict_vectors(app, after.model_id, x, after.id) if len(listed) else []
        found = []
        for seq, (size, _), p, q in zip(listed.tolist(), changed_rows, old_p, new_p):
            entry = labels.entries[seq]
            found.append(ChangedInput(
                input_id=entry.input_id, before=_answer(p, before.mutually_exclusive),
                after=_answer(q, after.mutually_exclusive), change=round(size, 4),
                neighbours=[(n.input_id, round(n.similarity, 4)) for n in q.neighbours[:5]],
                labels=sorted(entry.positives & concepts)))
        total, sampled, changed = len(entries), len(seqs) - len(labeled), len(changed_rows)
        # Changes among the unlabeled sample, scaled to every unlabeled input, plus the labeled ones.
        estimate = changed_labeled + round((changed - changed_labeled) * (total - len(labeled)) / max(sampled, 1))
        return ChangeReport(
            model_id=after.model_id, version_id=after.id, against=before.id, compared=len(seqs), inputs=total,
            changed=changed, changed_estimate=changed if len(seqs) >= total else estimate,
            concepts=_side_by_side(before, after), changes=found)


def _answer(p: Prediction, mutually_exclusive: bool) -> Answer:
    decision = [p.concepts[0].concept_id] if mutually_exclusive and p.concepts else list(p.met)
    return Answer(decision=decision, concepts=[(c.concept_id, round(c.value, 4)) for c in p.concepts[:3]])


def _changes(old: np.ndarray, old_ids: list[str], new: np.ndarray, new_ids: list[str]) -> np.ndarray:
    """Per row, the largest change of any concept's confidence (a concept one version lacks counts 0)."""
    concepts = list(dict.fromkeys([*old_ids, *new_ids]))

    def aligned(scores: np.ndarray, ids: list[str]) -> np.ndarray:
        out = np.zeros((len(scores), len(concepts)), np.float32)
        out[:, [concepts.index(c) for c in ids]] = scores
        return out

    return np.abs(aligned(new, new_ids) - aligned(old, old_ids)).max(axis=1)


def _side_by_side(before: ModelVersion, after: ModelVersion) -> list[ConceptSideBySide]:
    def by_concept(v: ModelVersion) -> dict[str, ConceptThreshold]:
        return {t.concept_id: t for t in v.thresholds}

    def ap(v: ModelVersion) -> dict[str, float | None]:
        return {m.concept_id: m.average_precision for m in v.evaluation.concepts} if v.evaluation else {}

    b, a, b_ap, a_ap = by_concept(before), by_concept(after), ap(before), ap(after)
    return [ConceptSideBySide(concept_id=c, before=b.get(c), after=a.get(c), before_average_precision=b_ap.get(c),
                              after_average_precision=a_ap.get(c))
            for c in dict.fromkeys([*after.concept_ids, *before.concept_ids])]
