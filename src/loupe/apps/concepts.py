"""An app's concepts: the names its labels and models use."""

from __future__ import annotations

import fnmatch
import itertools
import time

import msgspec

from loupe.apps.context import AppContext
from loupe.errors import Conflict, NotFound
from loupe.ids import check_id, check_name
from loupe.pagination import page_window
from loupe.store.records import SYSTEM, Actor, Concept


class Concepts:
    def __init__(self, context: AppContext) -> None:
        self._context = context
        self._store = context.store

    def add(self, app_id: str, concepts: list[tuple[str, str | None]], *, by: Actor = SYSTEM) -> list[Concept]:
        self._context.sync(app_id)
        now = time.time()
        created = [Concept(id=check_id("concept", cid), name=check_name("concept", name or cid), created_at=now)
                   for cid, name in concepts]
        with self._store.write(by) as tx:
            for concept in created:
                if tx.get_concept(app_id, concept.id) is not None:
                    raise Conflict(f"concept {concept.id!r} already exists")
                tx.put_concept(app_id, concept)
        return created

    def rename(self, app_id: str, names: list[tuple[str, str]], *, by: Actor = SYSTEM) -> list[Concept]:
        self._context.sync(app_id)
        with self._store.write(by) as tx:
            renamed = []
            for concept_id, name in names:
                concept = tx.get_concept(app_id, concept_id)
                if concept is None:
                    raise NotFound("concept", concept_id)
                concept = msgspec.structs.replace(concept, name=check_name("concept", name))
                tx.put_concept(app_id, concept)
                renamed.append(concept)
        return renamed

    def get(self, app_id: str, concept_id: str) -> Concept:
        self._context.sync(app_id)
        with self._store.read() as tx:
            concept = tx.get_concept(app_id, concept_id)
        if concept is None:
            raise NotFound("concept", concept_id)
        return concept

    def list_page(self, app_id: str, page: int = 1, per_page: int = 20) -> list[Concept]:
        self._context.sync(app_id)
        offset, limit = page_window(page, per_page)
        with self._store.read() as tx:
            return list(itertools.islice(tx.iter_concepts(app_id), offset, offset + limit))

    def search(self, app_id: str, name: str, *, page: int = 1, per_page: int = 20) -> list[Concept]:
        """Case-insensitive name match; '*' is a wildcard (Clarifai's concept search), one page of it."""
        self._context.sync(app_id)
        offset, limit = page_window(page, per_page)
        pattern = name.lower()
        with self._store.read() as tx:
            found = (c for c in tx.iter_concepts(app_id)
                     if fnmatch.fnmatchcase(c.name.lower(), pattern) or fnmatch.fnmatchcase(c.id.lower(), pattern))
            return list(itertools.islice(found, offset, offset + limit))

    def names(self, app_id: str) -> dict[str, str]:
        """Every concept id of the app with its display name."""
        with self._store.read() as tx:
            return {c.id: c.name for c in tx.iter_concepts(app_id)}

    def by_id(self, app_id: str, concept_ids: list[str]) -> list[Concept]:
        """The named concepts that exist, in the order given."""
        with self._store.read() as tx:
            return [c for cid in concept_ids if (c := tx.get_concept(app_id, cid)) is not None]

    def counts(self, app_id: str, concept_id: str) -> tuple[int, int]:
        """(positive, negative) annotation counts."""
        with self._store.read() as tx:
            return (len(tx.labelled_seqs(app_id, concept_id, True)),
                    len(tx.labelled_seqs(app_id, concept_id, False)))
