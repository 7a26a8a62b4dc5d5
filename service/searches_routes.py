"""/v2/searches: by image (bytes or URL), by stored input, by text (CLIP apps), filtered by annotated or
predicted concepts and metadata."""

from __future__ import annotations

import numpy as np
from litestar import Request, post
from litestar.params import RawBody
from loupe.service.common import (
    concept_ref,
    image_bytes,
    inputs_json,
    ok,
    request_deadline,
)
from loupe.service.errors import ApiError
from loupe.service.threads import in_thread
from loupe.service.wire import PostSearches, WConcept, decode

from loupe.api_keys import KeyRecord
from loupe.application import Loupe
from loupe.embedding_cache import embed_once
from loupe.ids import new_id
from loupe.imaging import decode_image
from loupe.search import ConceptFilter, SearchFilter

PREDICTED_THRESHOLD = 0.5


@post("/v2/searches", status_code=200)
@in_thread
def search(loupe: Loupe, key: KeyRecord, request: Request, body: RawBody) -> dict:
    req = decode(body, PostSearches)
    app = loupe.get_app(key.app_id)
    vector: np.ndarray | None = None
    concept_filters: list[ConceptFilter] = []
    metadata: dict = {}
    predicted: set[int] | None = None

    def set_vector(v: np.ndarray) -> None:
        nonlocal vector
        if vector is not None:
            raise ApiError(400, 11102, "a search can have only one image, input or text to match")
        vector = v

    for clause in req.query.ands:
        if clause.output is not None and clause.output.input is not None:
            wanted = clause.output.input
            image = wanted.data.image
            if image is not None and (image.base64 or image.url):
                decoded = decode_image(image_bytes(loupe, image, 0, request_deadline(loupe)), loupe.config.images)
                set_vector(embed_once(loupe.store, loupe.backbone(app), [decoded]).vectors[0])
            elif wanted.id:
                record = loupe.get_input(key.app_id, wanted.id)
                set_vector(loupe.embeddings_of(app, np.asarray([record.seq], np.int64))[0])
            elif wanted.data.text is not None and wanted.data.text.raw:
                set_vector(loupe.backbone(app).embed_text([wanted.data.text.raw])[0])
            else:
                raise ApiError(400, 11102, "output.input needs data.image (base64 or url), an id, or data.text.raw")
        elif clause.output is not None and clause.output.data is not None:
            for concept in clause.output.data.concepts:
                seqs = _predicted(loupe, key.app_id, concept)
                if seqs is None:  # no trained model knows the concept: match its name by text (CLIP)
                    set_vector(loupe.backbone(app).embed_text([concept.name or concept.id or ""])[0])
                    continue
                predicted = seqs if predicted is None else predicted & seqs
        elif clause.input is not None:
            data = clause.input.data
            for concept in data.concepts:
                concept_filters.append(ConceptFilter(concept_ref(loupe, key.app_id, concept), concept.positive))
            if data.metadata:
                metadata.update(data.metadata)
            if not data.concepts and not data.metadata:
                raise ApiError(400, 11102, "input clause needs data.concepts or data.metadata")
        else:
            raise ApiError(400, 11102, "each query.ands item needs input or output")

    flt = SearchFilter(concepts=tuple(concept_filters), metadata=metadata,
                       seqs=None if predicted is None else tuple(sorted(predicted)))
    page, per_page = req.pagination.page, req.pagination.per_page
    if vector is not None:
        hits = loupe.search_by_vector(app, vector, page=page, per_page=per_page, flt=flt)
    elif not flt.empty:
        hits = loupe.search_by_filter(key.app_id, flt, page=page, per_page=per_page)
    else:
        raise ApiError(400, 11102, "the query is empty: give query.ands")
    inputs = inputs_json(request, loupe, key.app_id, [h.input for h in hits])
    return ok(id=new_id(), hits=[{"score": round(min(1.0, max(0.0, h.score)), 6), "input": i}
                                 for h, i in zip(hits, inputs)])


def _predicted(loupe: Loupe, app_id: str, concept: WConcept) -> set[int] | None:
    """Inputs that the app's newest trained model with this concept predicts (value 1) or not (value 0)."""
    concept_id = concept_ref(loupe, app_id, concept)
    for model in loupe.models.list(app_id, per_page=1000):
        trained = next((v for v in loupe.models.versions(app_id, model.id, per_page=1000)
                        if v.status == "trained"), None)
        if trained is None or concept_id not in trained.concept_ids:
            continue
        app = loupe.get_app(app_id)
        seqs = np.fromiter(loupe.labels.get(app_id).entries, np.int64)
        keep: set[int] = set()
        for start in range(0, len(seqs), 1024):
            chunk = seqs[start:start + 1024]
            vectors = loupe.embeddings_of(app, chunk)
            for seq, p in zip(chunk.tolist(), loupe.models.predict_vectors(app_id, model.id, vectors,
                                                                           trained.id)):
                score = next(c.value for c in p.concepts if c.concept_id == concept_id)
                if (score >= PREDICTED_THRESHOLD) == concept.positive:
                    keep.add(seq)
        return keep
    return None


ROUTES = [search]
