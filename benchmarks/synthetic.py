"""Synthetic inputs written straight through the store's write transactions (inputs, concepts, vectors;
no image bytes), BATCH a transaction: how the scale benchmarks and the tests make apps of 20,000 to a
million inputs in seconds. Needs no dataset, so a plain clone's tests may use it."""

from __future__ import annotations

import time

import msgspec
import numpy as np

from loupe.application import Loupe
from loupe.store.records import Concept, Input

BATCH = 10_000


def write_inputs(loupe: Loupe, app_id: str, x: np.ndarray, concepts: list[str | None]) -> float:
    """Inputs, their concepts (None: unlabeled) and vectors through the store's write transactions;
    returns seconds."""
    backbone = loupe.apps.get(app_id).backbone
    started = time.perf_counter()
    now = time.time()
    for start in range(0, len(x), BATCH):
        with loupe.store.write() as tx:
            app = tx.get_app(app_id)
            assert app is not None
            for offset in range(min(BATCH, len(x) - start)):
                i = start + offset
                sha = f"{i:064x}"  # synthetic content: one distinct "image" per input
                label = concepts[i]
                tx.put_input(app_id, Input(id=f"s{i}", seq=app.next_seq + offset, sha256=sha,
                                           concepts=[label] if label is not None else [],
                                           created_at=now))
                tx.put_embedding(backbone, sha, x[i])
            for concept in set(concepts[start:start + BATCH]) - {None}:
                if tx.get_concept(app_id, concept) is None:
                    tx.put_concept(app_id, Concept(id=concept, name=concept, created_at=now))
            tx.put_app(msgspec.structs.replace(app, next_seq=app.next_seq + min(BATCH, len(x) - start),
                                               generation=app.generation + 1))
    return time.perf_counter() - started
