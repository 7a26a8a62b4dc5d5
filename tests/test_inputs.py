"""Inputs and concepts in the real LMDB store: CRUD, pagination, label edits, atomic batches, isolation."""

from __future__ import annotations

import pytest
from conftest import CLOTHING, dataset_images

from loupe.application import NewInput
from loupe.errors import Conflict, InvalidArgument, NotAnImage, NotFound
from loupe.imaging import content_hash
from loupe.labels import InputEdit
from loupe.search import ConceptFilter, SearchFilter


def _new(cls: str, n: int, start: int = 0, **kw) -> list[NewInput]:
    return [NewInput(image=p.read_bytes(), id=f"{cls}-{start + i}", concepts=[cls], **kw)
            for i, p in enumerate(dataset_images(CLOTHING / "train" / cls, n, start))]


@pytest.fixture
def app(loupe):
    return loupe.create_app("shop")


def test_add_get_and_implicit_concepts(loupe, app):
    item = _new("shoes", 1)[0]
    item.metadata = {"sku": "A1", "size": {"eu": 42.0}}
    item.not_concepts = ["hat"]
    added = loupe.add_inputs("shop", [item])
    assert added.embedded == 1
    record = loupe.get_input("shop", "shoes-0")
    assert record.concepts == ["shoes"] and record.not_concepts == ["hat"]
    assert record.metadata == {"sku": "A1", "size": {"eu": 42.0}}
    assert record.width > 0 and record.height > 0
    assert {c.id for c in loupe.list_concepts("shop")} == {"shoes", "hat"}
    assert loupe.get_concept("shop", "hat").name == "hat"
    assert loupe.concept_counts("shop", "hat") == (0, 1)
    assert loupe.input_image("shop", "shoes-0") == item.image


def test_generated_ids_are_unique(loupe, app):
    items = _new("hat", 2)
    for item in items:
        item.id = None
    records = loupe.add_inputs("shop", items).inputs
    assert len({r.id for r in records}) == 2


def test_pagination_newest_first_and_stable(loupe, app):
    loupe.add_inputs("shop", _new("shoes", 4))
    loupe.add_inputs("shop", _new("hat", 3))
    pages = [[r.id for r in loupe.list_inputs("shop", page=p, per_page=3)] for p in (1, 2, 3, 4)]
    assert pages[0] == ["hat-2", "hat-1", "hat-0"]
    assert pages[1] == ["shoes-3", "shoes-2", "shoes-1"]
    assert pages[2] == ["shoes-0"]
    assert pages[3] == []
    assert loupe.count_inputs("shop") == 7
    with pytest.raises(InvalidArgument, match="page must be between"):
        loupe.list_inputs("shop", page=0)
    with pytest.raises(InvalidArgument, match="per_page"):
        loupe.list_inputs("shop", per_page=100_000)
    by_concept = loupe.list_inputs("shop", flt=SearchFilter(concepts=(ConceptFilter("shoes"),)), per_page=2)
    assert [r.id for r in by_concept] == ["shoes-3", "shoes-2"]


def test_batch_is_all_or_nothing(loupe, app):
    items = _new("shoes", 3)
    items[1].image = b"definitely not a jpeg"
    with pytest.raises(NotAnImage, match=r"input 1 \(shoes-1\)"):
        loupe.add_inputs("shop", items)
    assert loupe.count_inputs("shop") == 0
    assert loupe.list_concepts("shop") == []


def test_duplicate_ids_are_refused(loupe, app):
    loupe.add_inputs("shop", _new("shoes", 1))
    with pytest.raises(Conflict, match="already exists"):
        loupe.add_inputs("shop", _new("shoes", 2))
    assert loupe.count_inputs("shop") == 1
    twice = _new("hat", 1) * 2
    with pytest.raises(Conflict, match="twice"):
        loupe.add_inputs("shop", twice)


def test_bad_ids_are_refused(loupe, app):
    for bad in ["", "a/b", "..", "x\x00y", "x" * 10_000, " padded "]:
        item = _new("shoes", 1)[0]
        item.id = bad
        with pytest.raises(InvalidArgument):
            loupe.add_inputs("shop", [item])
    item = _new("shoes", 1)[0]
    item.concepts = ["ok", "bad/concept"]
    with pytest.raises(InvalidArgument, match="concept id"):
        loupe.add_inputs("shop", [item])
    item.concepts, item.not_concepts = ["same"], ["same"]
    with pytest.raises(InvalidArgument, match="both positive and negative"):
        loupe.add_inputs("shop", [item])
    assert loupe.count_inputs("shop") == 0


def test_unicode_ids_and_names(loupe, app):
    item = _new("shoes", 1)[0]
    item.id, item.concepts = "靴-1", ["Schuhe-ä", "обувь"]
    loupe.add_inputs("shop", [item])
    assert loupe.get_input("shop", "靴-1").concepts == ["Schuhe-ä", "обувь"]
    loupe.rename_concepts("shop", [("обувь", "Обувь 👟")])
    assert loupe.get_concept("shop", "обувь").name == "Обувь 👟"
    assert [c.id for c in loupe.search_concepts("shop", "обу*")] == ["обувь"]


def test_concept_edits_merge_remove_overwrite(loupe, app):
    loupe.add_inputs("shop", _new("shoes", 2))
    def shoes():
        return [r.id for r in loupe.list_inputs("shop", flt=SearchFilter(concepts=(ConceptFilter("shoes"),)))]
    def not_shoes():
        return [r.id for r in loupe.list_inputs(
            "shop", flt=SearchFilter(concepts=(ConceptFilter("shoes", positive=False),)))]

    [r] = loupe.edit_inputs("shop", "merge", [InputEdit(input_id="shoes-0", concepts=["sale"],
                                                        metadata={"colour": "red"})])
    assert r.concepts == ["shoes", "sale"] and r.metadata == {"colour": "red"}

    # Correcting a label: merging it as negative moves it out of the positives.
    [r] = loupe.edit_inputs("shop", "merge", [InputEdit(input_id="shoes-0", not_concepts=["shoes"])])
    assert r.concepts == ["sale"] and r.not_concepts == ["shoes"]
    assert shoes() == ["shoes-1"] and not_shoes() == ["shoes-0"]

    # Remove matches by id, whichever side the concept is on.
    [r] = loupe.edit_inputs("shop", "remove", [InputEdit(input_id="shoes-0", concepts=["shoes", "sale"])])
    assert r.concepts == [] and r.not_concepts == []
    assert not_shoes() == []

    [r] = loupe.edit_inputs("shop", "overwrite", [InputEdit(input_id="shoes-1", concepts=["boots"],
                                                            metadata={"a": 1})])
    assert r.concepts == ["boots"] and r.metadata == {"a": 1}
    assert shoes() == []
    assert loupe.concept_counts("shop", "boots") == (1, 0)

    with pytest.raises(InvalidArgument, match="action"):
        loupe.edit_inputs("shop", "replace", [])
    with pytest.raises(NotFound):
        loupe.edit_inputs("shop", "merge", [InputEdit(input_id="nope", concepts=["x"])])


def test_delete_inputs_and_blob_refcount(loupe, app):
    items = _new("shoes", 2)
    copy = NewInput(image=items[0].image, id="copy-of-0")
    loupe.add_inputs("shop", items + [copy])
    with pytest.raises(NotFound):
        loupe.delete_inputs("shop", ["shoes-1", "nope"])
    assert loupe.count_inputs("shop") == 3
    loupe.delete_inputs("shop", ["shoes-0"])
    assert loupe.input_image("shop", "copy-of-0") == items[0].image  # shared bytes survive
    with pytest.raises(NotFound):
        loupe.get_input("shop", "shoes-0")
    assert loupe.delete_all_inputs("shop") == 2
    assert loupe.count_inputs("shop") == 0
    with loupe.store.read() as tx:
        assert tx.get_blob(content_hash(copy.image)) is None


def test_apps_are_isolated(loupe, app):
    loupe.create_app("other")
    loupe.add_inputs("shop", _new("shoes", 2))
    loupe.add_inputs("other", _new("shoes", 1))  # same id "shoes-0" in another app is fine
    assert loupe.count_inputs("shop") == 2 and loupe.count_inputs("other") == 1
    loupe.delete_inputs("other", ["shoes-0"])
    assert loupe.get_input("shop", "shoes-0").id == "shoes-0"
    hits = loupe.search_by_input("shop", "shoes-1")
    assert {h.input.id for h in hits} == {"shoes-0", "shoes-1"}
    with pytest.raises(NotFound):
        loupe.get_input("other", "shoes-1")
    with pytest.raises(Conflict):
        loupe.create_app("shop")
    with pytest.raises(NotFound, match="app 'ghost'"):
        loupe.list_inputs("ghost")
    summaries = {s.app.id: s for s in loupe.list_apps()}
    assert summaries["shop"].input_count == 2 and summaries["other"].input_count == 0
    loupe.delete_app("other")
    assert [s.app.id for s in loupe.list_apps()] == ["shop"]
