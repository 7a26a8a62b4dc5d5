"""Predict with any model: inputs are embedded once, then one `Predictor` scores the rows — a custom model,
the General model (ImageNet-1k on EfficientNet apps, zero-shot on CLIP apps) or the General embedding
model. Also the catalog of models as the API lists them (built-in ones first, as Clarifai does)."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

from loupe.apps.concepts import Concepts
from loupe.apps.context import AppContext
from loupe.errors import InvalidArgument, NotFound
from loupe.intake.embedding import EmbeddedRows, Embedder, Item
from loupe.learning.prediction import Prediction
from loupe.models.drift import Drift
from loupe.models.general import (
    GENERAL_EMBED_MODEL_ID,
    GENERAL_MODEL_ID,
    ModelKind,
    builtin_kind,
    general_records,
    imagenet_predictions,
    zero_shot_predictions,
)
from loupe.models.predictor import CustomPredictor
from loupe.models.registry import ModelRegistry
from loupe.pagination import page_window
from loupe.store.records import App, Concept, Model, ModelVersion


class FrameAnswer(msgspec.Struct):
    index: int
    time_ms: int
    prediction: Prediction | None  # None for the embedding model
    embedding: Any  # the frame's unit vector (np.ndarray)


class InputAnswer(msgspec.Struct):
    prediction: Prediction | None = None  # an image (None for the embedding model, and for videos)
    embedding: Any = None  # an image's unit vector (np.ndarray)
    frames: list[FrameAnswer] = []  # a video's sampled frames


class ModelView(msgspec.Struct):
    """A model as the API shows it: custom or built-in (Clarifai lists built-ins as public, app "main")."""

    model: Model
    version: ModelVersion | None
    concepts: list[Concept]
    kind: ModelKind = ModelKind.CONCEPT
    public: bool = False


class PredictAnswer(msgspec.Struct):
    view: ModelView  # the model, with the version that answered
    answers: list[InputAnswer]  # one per input, in order

    @property
    def model(self) -> Model:
        return self.view.model

    @property
    def version(self) -> ModelVersion:
        assert self.view.version is not None
        return self.view.version

    @property
    def predictions(self) -> list[Prediction | None]:
        return [a.prediction for a in self.answers]


class Predictor(Protocol):
    def score(self, app: App, rows: EmbeddedRows, version: ModelVersion,
              concepts: Sequence[str]) -> list[Prediction | None]:
        """One answer per row (`concepts`: the names to score, for models that take them)."""
        ...


class CustomScores:
    def __init__(self, predictor: CustomPredictor) -> None:
        self._predictor = predictor

    def score(self, app: App, rows: EmbeddedRows, version: ModelVersion,
              concepts: Sequence[str]) -> list[Prediction | None]:
        return list(self._predictor.predict_vectors(app, version.model_id, rows.vectors, version.id))


class GeneralScores:
    """ImageNet-1k on EfficientNet apps; zero-shot over `concepts` (default: the app's) on CLIP apps."""

    def __init__(self, context: AppContext, embedder: Embedder, concepts: Concepts) -> None:
        self._context = context
        self._embedder = embedder
        self._concepts = concepts

    def score(self, app: App, rows: EmbeddedRows, version: ModelVersion,
              concepts: Sequence[str]) -> list[Prediction | None]:
        backbone = self._context.backbone(app)
        if backbone.supports_text:
            names = list(concepts) or [c.name for c in self._concepts.list_page(app.id, per_page=1000)]
            if not names:
                raise InvalidArgument("give concept names to score, or add concepts to the app")
            return list(zero_shot_predictions(backbone, rows.vectors, names))
        self._embedder.fill_norms(app, rows)
        return list(imagenet_predictions(backbone, rows.vectors, rows.norms))


class EmbeddingScores:
    def score(self, app: App, rows: EmbeddedRows, version: ModelVersion,
              concepts: Sequence[str]) -> list[Prediction | None]:
        return [None] * len(rows.vectors)


class Predictions:
    def __init__(self, context: AppContext, embedder: Embedder, registry: ModelRegistry,
                 predictor: CustomPredictor, concepts: Concepts, drift: Drift) -> None:
        self._context = context
        self._drift = drift
        self._embedder = embedder
        self._registry = registry
        self._predictor = predictor
        self._concepts = concepts
        self._scorers: dict[ModelKind | None, Predictor] = {
            None: CustomScores(predictor), ModelKind.CONCEPT: GeneralScores(context, embedder, concepts),
            ModelKind.EMBED: EmbeddingScores()}

    def predict(self, app_id: str, model_id: str, inputs: Sequence[Item],
                version_id: str | None = None) -> PredictAnswer:
        """Stored inputs (ids), new images (bytes) and videos (one answer per sampled frame) through one
        model; every row is embedded once and scored in one call."""
        if not inputs:
            raise InvalidArgument("no inputs to predict")
        app = self._context.sync(app_id)
        view = self.answering(app, model_id, version_id)  # fails before embedding if untrained
        answer = PredictAnswer(view, self.score(app, self._embedder.rows(app, inputs), view, ()))
        if not view.public:  # a custom model: count what it was asked (loupe.models.drift)
            self._drift.record(app_id, model_id, inputs, answer.predictions)
        return answer

    def answering(self, app: App, model_id: str, version_id: str | None = None) -> ModelView:
        """The model and the version a prediction would use: the named one or the latest trained one
        (ModelNotTrained when there is none); a built-in model's one version."""
        kind = builtin_kind(model_id)
        if kind is not None:
            model, version = general_records(self._context.backbone(app), kind)
            return ModelView(model, version, [], kind, public=True)
        version = self._predictor.loaded(app.id, model_id, version_id).version
        return ModelView(self._registry.get(app.id, model_id), version, [])

    def score(self, app: App, rows: EmbeddedRows, view: ModelView, concepts: Sequence[str]) -> list[InputAnswer]:
        """One model over embedded rows, regrouped per input (`concepts`: the zero-shot names on CLIP apps)."""
        assert view.version is not None
        kind = builtin_kind(view.model.id)
        scored = self._scorers[kind].score(app, rows, view.version, concepts)
        answers = []
        for (start, stop), samples in zip(rows.spans, rows.frames):
            if samples:
                answers.append(InputAnswer(frames=[
                    FrameAnswer(s.index, s.time_ms, scored[start + j], rows.vectors[start + j])
                    for j, s in enumerate(samples)]))
            else:
                answers.append(InputAnswer(prediction=scored[start], embedding=rows.vectors[start]))
        return answers

    # ----------------------------------------------------------------- catalog
    def describe(self, app_id: str, model_id: str, version_id: str | None = None) -> ModelView:
        """A model and one of its versions (the newest by default), the built-in models included."""
        app = self._context.sync(app_id)
        if builtin_kind(model_id) is not None:
            return self.answering(app, model_id)
        model = self._registry.get(app_id, model_id)
        return ModelView(model, self._registry.version(app_id, model_id, version_id),
                         self._concepts.by_id(app_id, model.concept_ids))

    def versions(self, app_id: str, model_id: str, page: int = 1, per_page: int = 20) -> list[ModelVersion]:
        """A model's versions, newest first; a built-in model has its one fixed version."""
        if builtin_kind(model_id) is None:
            return self._registry.versions(app_id, model_id, page=page, per_page=per_page)
        offset, limit = page_window(page, per_page)
        version = self.answering(self._context.sync(app_id), model_id).version
        return ([] if version is None else [version])[offset:offset + limit]

    def version(self, app_id: str, model_id: str, version_id: str) -> ModelVersion:
        if builtin_kind(model_id) is None:
            return self._registry.version(app_id, model_id, version_id)
        version = self.answering(self._context.sync(app_id), model_id).version
        if version is None or version.id != version_id:
            raise NotFound("version", version_id)
        return version

    def builtin(self, app_id: str) -> list[ModelView]:
        """The General model and the General embedding model, as this app's backbone answers them."""
        app = self._context.sync(app_id)
        return [self.answering(app, model_id) for model_id in (GENERAL_MODEL_ID, GENERAL_EMBED_MODEL_ID)]

    def list_page(self, app_id: str, page: int = 1, per_page: int = 20) -> list[ModelView]:
        """The built-in models first (as Clarifai lists its public ones), then the app's, newest first."""
        offset, limit = page_window(page, per_page)
        builtin = self.builtin(app_id)
        custom = self._registry.ordered(app_id)[max(0, offset - len(builtin)):max(0, offset + limit - len(builtin))]
        return builtin[offset:offset + limit] + [self.describe(app_id, m.id) for m in custom]

    def search(self, app_id: str, name: str = "*", kind: str = "") -> list[ModelView]:
        """Models whose name or id matches (case-insensitive, '*' wildcards) and of the type asked for
        (Clarifai's `concept` or `embed`; empty: any); built-in ones first."""
        pattern = (name or "*").lower()
        found = [v for v in self.builtin(app_id) if (not kind or v.kind == kind) and
                 (fnmatch.fnmatchcase(v.model.name.lower(), pattern) or fnmatch.fnmatchcase(v.model.id, pattern))]
        return found + [self.describe(app_id, m.id) for m in self._registry.search(app_id, name, kind)]
