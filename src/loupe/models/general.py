"""The built-in General model: the 1,000 ImageNet concepts, offline, from the classifier the
EfficientNet-Lite backbones were trained with. Served at the id Clarifai's official clients use for
`app.public_models.general_model` and at a readable alias; concept ids are WordNet ids (n02123394,
"Persian cat"). It works on the vectors Loupe already stores: the classifier reads the pooled
features, i.e. the stored unit vector times its stored norm, so a workflow of General + custom
models embeds each image once. CLIP apps answer zero-shot from the text tower instead.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path

import numpy as np

from loupe.backbones.base import Backbone
from loupe.errors import CapabilityMissing, InvalidArgument
from loupe.learning.heads import head_probabilities
from loupe.learning.prediction import ConceptScore, Prediction
from loupe.store.records import Model, ModelVersion, VersionStatus

GENERAL_MODEL_ID = "aaa03c23b3724a16a56b629203edc62c"  # Clarifai's general model, as its clients name it
GENERAL_EMBED_MODEL_ID = "bbb5f41425b8468d9b7a554ff10f8581"  # Clarifai's general embedding model
# Clarifai's name for both (told apart by output_info.type); the Python client's predict_concepts,
# tag_files and models.get() look the General model up by it.
GENERAL_MODEL_NAME = "general-v1.3"
GENERAL_ALIASES = (GENERAL_MODEL_ID, GENERAL_MODEL_NAME, "general-image-recognition", "general")
EMBED_ALIASES = (GENERAL_EMBED_MODEL_ID, "general-image-embedding")
PROMPT = "a photo of a {}."
# CLIP's trained logit scale is ~100; it turns cosine gaps of a few hundredths into clear answers.
LOGIT_SCALE = 100.0
PUBLIC_APP_ID = "main"  # Clarifai lists its public models under this app id; clients tell them apart by it
_CLASSES_FILE = Path(__file__).resolve().parent.parent / "data" / "imagenet_classes.tsv"


class ModelKind(StrEnum):
    """Clarifai's output_info.type."""

    CONCEPT = "concept"
    EMBED = "embed"


def is_general(model_id: str) -> bool:
    return model_id in GENERAL_ALIASES


def is_embedding(model_id: str) -> bool:
    return model_id in EMBED_ALIASES


def is_builtin(model_id: str) -> bool:
    return is_general(model_id) or is_embedding(model_id)


def builtin_kind(model_id: str) -> ModelKind | None:
    return ModelKind.CONCEPT if is_general(model_id) else ModelKind.EMBED if is_embedding(model_id) else None


@functools.cache
def imagenet_classes() -> tuple[tuple[str, ...], dict[str, str]]:
    """(WordNet ids in class order, id -> readable name), from the packaged list (timm's ImageNet-1k)."""
    rows = [line.split("\t", 1) for line in _CLASSES_FILE.read_text().splitlines() if line]
    return tuple(wnid for wnid, _ in rows), {wnid: name for wnid, name in rows}


def general_version_id(backbone: Backbone) -> str:
    """ImageNet-1k on EfficientNet apps, zero-shot from the text tower on CLIP apps."""
    return f"{backbone.id}-zero-shot" if backbone.supports_text else f"{backbone.id}-imagenet-1k"


def general_records(backbone: Backbone, kind: ModelKind = ModelKind.CONCEPT) -> tuple[Model, ModelVersion]:
    """What the API shows for a built-in model: one fixed, trained version per backbone."""
    if kind is ModelKind.EMBED:
        model = Model(id=GENERAL_EMBED_MODEL_ID, name=GENERAL_MODEL_NAME, created_at=0.0, next_version=2)
        return model, ModelVersion(id=f"{backbone.id}-embedding", seq=1, model_id=GENERAL_EMBED_MODEL_ID,
                                   created_at=0.0, status=VersionStatus.TRAINED, backbone=backbone.id, dim=backbone.dim)
    model = Model(id=GENERAL_MODEL_ID, name=GENERAL_MODEL_NAME, concept_ids=[], mutually_exclusive=True,
                  created_at=0.0, next_version=2)
    version = ModelVersion(id=general_version_id(backbone), seq=1, model_id=GENERAL_MODEL_ID, created_at=0.0,
                           status=VersionStatus.TRAINED, mutually_exclusive=True, backbone=backbone.id,
                           dim=backbone.dim,
                           train_size=0 if backbone.supports_text else 1_281_167)
    return model, version


def imagenet_predictions(backbone: Backbone, vectors: np.ndarray, norms: np.ndarray) -> list[Prediction]:
    """Softmax over the 1,000 classes for each (unit vector, feature norm) pair, best first."""
    head = backbone.classifier()
    if head is None:
        raise CapabilityMissing(f"backbone {backbone.id} has no ImageNet classifier")
    if not np.all(np.isfinite(norms)):
        raise ValueError("every vector needs its feature norm")
    weights, bias = head
    logits = (np.asarray(vectors, np.float32) * norms[:, None]) @ weights.T + bias
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    wnids, _ = imagenet_classes()
    return _ranked(backbone, probs, wnids)


def zero_shot_predictions(backbone: Backbone, vectors: np.ndarray, names: Sequence[str]) -> list[Prediction]:
    """Zero-shot: score each name by the similarity of the image to a caption of it (softmax over names)."""
    if not backbone.supports_text:
        raise CapabilityMissing(f"the general model needs a text-capable backbone; this app uses {backbone.id}")
    if not names:
        raise InvalidArgument("give concept names to score, or add concepts to the app")
    text = backbone.embed_text([PROMPT.format(n) for n in names])
    probs = head_probabilities(LOGIT_SCALE * (vectors @ text.T), mutually_exclusive=True)
    return _ranked(backbone, probs, names)


def _ranked(backbone: Backbone, probs: np.ndarray, names: Sequence[str]) -> list[Prediction]:
    """One prediction per row of probabilities over `names`, best first."""
    out = []
    for row in probs:
        order = np.argsort(-row, kind="stable")
        out.append(Prediction(version_id=general_version_id(backbone), neighbours=[],
                              concepts=[ConceptScore(names[j], float(row[j])) for j in order]))
    return out
