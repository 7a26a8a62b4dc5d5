"""Inputs and concepts in the real LMDB store: CRUD, pagination, label edits, atomic batches, isolation."""

from __future__ import annotations

import pytest
from conftest import CLOTHING, dataset_images

from loupe.errors import Conflict, InvalidArgument, NotAnImage, NotFound
from loupe.intake.imaging import content_hash
from loupe.intake.inputs import NewInput
from loupe.intake.labels import InputEdit
from loupe.store.filters import ConceptFilter, SearchFilter


def _new(cls: str, n: int, start: int = 0, **kw) -> list[NewInput]:
    return [NewInput(image=p.read_bytes(), id=f"{cls}-{start + i}", concepts=[cls], **kw)
            for i, p in enumerate(dataset_images(CLOTHING / "train" / cls, n, start))]


@pytest.fixture
def app(loupe):
    return loupe.apps.create("shop")


def test_add_get_and_implicit_concepts(loupe, app):
    item = _new("shoes", 1)[0]
    item.metadata = {"sku": "A1", "size": {"eu": 42.0}}
    item.not_concepts = ["hat"]
    added = loupe.inputs.add("shop", [item])
    assert added.embedded == 1
    record = loupe.inputs.get("shop", "shoes-0")
    assert record.concepts == ["shoes"] and record.not_concepts == ["hat"]
    assert record.metadata == {"sku": "A1", "size": {"eu": 42.0}}
    assert record.width > 0 and record.height > 0
    assert {c.id for c in loupe.concepts.list_page("shop")} == {"shoes", "hat"}
    assert loupe.concepts.get("shop", "hat").name == "hat"
    assert loupe.concepts.counts("shop", "hat") == (0, 1)
    assert loupe.inputs.image("shop", "shoes-0") == item.image


def test_generated_ids_are_unique(loupe, app):
    items = _new("hat", 2)
    for item in items:
        item.id = None
    records = loupe.inputs.add("shop", items).inputs
    assert len({r.id for r in records}) == 2


def test_pagination_newest_first_and_stable(loupe, app):
    loupe.inputs.add("shop", _new("shoes", 4))
    loupe.inputs.add("shop", _new("hat", 3))
    pages = [[r.id for r in loupe.inputs.list_page("shop", page=p, per_page=3)] for p in (1, 2, 3, 4)]
    assert pages[0] == ["hat-2", "hat-1", "hat-0"]
    assert pages[1] == ["shoes-3", "shoes-2", "shoes-1"]
    assert pages[2] == ["shoes-0"]
    assert pages[3] == []
    assert loupe.inputs.count("shop") == 7
    with pytest.raises(InvalidArgument, match="page must be between"):
        loupe.inputs.list_page("shop", page=0)
    with pytest.raises(InvalidArgument, match="per_page"):
        loupe.inputs.list_page("shop", per_page=100_000)
    by_concept = loupe.inputs.list_page("shop", flt=SearchFilter(concepts=(ConceptFilter("shoes"),)), per_page=2)
    assert [r.id for r in by_concept] == ["shoes-3", "shoes-2"]


def test_batch_is_all_or_nothing(loupe, app):
    items = _new("shoes", 3)
    items[1].image = b"definitely not a jpeg"
    with pytest.raises(NotAnImage, match=r"input 1 \(shoes-1\)"):
        loupe.inputs.add("shop", items)
    assert loupe.inputs.count("shop") == 0
    assert loupe.concepts.list_page("shop") == []


def test_duplicate_ids_are_refused(loupe, app):
    loupe.inputs.add("shop", _new("shoes", 1))
    with pytest.raises(Conflict, match="already exists"):
        loupe.inputs.add("shop", _new("shoes", 2))
    assert loupe.inputs.count("shop") == 1
    twice = _new("hat", 1) * 2
    with pytest.raises(Conflict, match="twice"):
        loupe.inputs.add("shop", twice)


def test_bad_ids_are_refused(loupe, app):
    for bad in ["", "a/b", "..", "x\x00y", "x" * 10_000, " padded "]:
        item = _new("shoes", 1)[0]
        item.id = bad
        with pytest.raises(InvalidArgument):
            loupe.inputs.add("shop", [item])
    item = _new("shoes", 1)[0]
    item.concepts = ["ok", "bad/concept"]
    with pytest.raises(InvalidArgument, match="concept id"):
        loupe.inputs.add("shop", [item])
    item.concepts, item.not_concepts = ["same"], ["same"]
    with pytest.raises(InvalidArgument, match="both positive and negative"):
        loupe.inputs.add("shop", [item])
    assert loupe.inputs.count("shop") == 0


def test_unicode_ids_and_names(loupe, app):
    item = _new("shoes", 1)[0]
    item.id, item.concepts = "靴-1", ["Schuhe-ä", "обувь"]
    loupe.inputs.add("shop", [item])
    assert loupe.inputs.get("shop", "靴-1").concepts == ["Schuhe-ä", "обувь"]
    loupe.concepts.rename("shop", [("обувь", "Обувь 👟")])
    assert loupe.concepts.get("shop", "обувь").name == "Обувь 👟"
    assert [c.id for c in loupe.concepts.search("shop", "обу*")] == ["обувь"]


def test_concept_edits_merge_remove_overwrite(loupe, app):
    loupe.inputs.add("shop", _new("shoes", 2))
    def shoes():
        return [r.id for r in loupe.inputs.list_page("shop", flt=SearchFilter(concepts=(ConceptFilter("shoes"),)))]
    def not_shoes():
        return [r.id for r in loupe.inputs.list_page(
            "shop", flt=SearchFilter(concepts=(ConceptFilter("shoes", positive=False),)))]

    [r] = loupe.inputs.edit("shop", "merge", [InputEdit(input_id="shoes-0", concepts=["sale"],
                                                        metadata={"colour": "red"})])
    assert r.concepts == ["shoes", "sale"] and r.metadata == {"colour": "red"}

    # Correcting a label: merging it as negative moves it out of the positives.
    [r] = loupe.inputs.edit("shop", "merge", [InputEdit(input_id="shoes-0", not_concepts=["shoes"])])
    assert r.concepts == ["sale"] and r.not_concepts == ["shoes"]
    assert shoes() == ["shoes-1"] and not_shoes() == ["shoes-0"]

    # Remove matches by id, whichever side the concept is on.
    [r] = loupe.inputs.edit("shop", "remove", [InputEdit(input_id="shoes-0", concepts=["shoes", "sale"])])
    assert r.concepts == [] and r.not_concepts == []
    assert not_shoes() == []

    [r] = loupe.inputs.edit("shop", "overwrite", [InputEdit(input_id="shoes-1", concepts=["boots"],
                                                            metadata={"a": 1})])
    assert r.concepts == ["boots"] and r.metadata == {"a": 1}
    assert shoes() == []
    assert loupe.concepts.counts("shop", "boots") == (1, 0)

    with pytest.raises(InvalidArgument, match="action"):
        loupe.inputs.edit("shop", "replace", [])
    with pytest.raises(NotFound):
        loupe.inputs.edit("shop", "merge", [InputEdit(input_id="nope", concepts=["x"])])


def test_delete_inputs_and_blob_refcount(loupe, app):
    items = _new("shoes", 2)
    copy = NewInput(image=items[0].image, id="copy-of-0")
    loupe.inputs.add("shop", items + [copy])
    with pytest.raises(NotFound):
        loupe.inputs.delete("shop", ["shoes-1", "nope"])
    assert loupe.inputs.count("shop") == 3
    loupe.inputs.delete("shop", ["shoes-0"])
    assert loupe.inputs.image("shop", "copy-of-0") == items[0].image  # shared bytes survive
    with pytest.raises(NotFound):
        loupe.inputs.get("shop", "shoes-0")
    assert loupe.inputs.delete_all("shop") == 2
    assert loupe.inputs.count("shop") == 0
    with loupe.store.read() as tx:
        assert tx.get_blob(content_hash(copy.image)) is None


def test_apps_are_isolated(loupe, app):
    loupe.apps.create("other")
    loupe.inputs.add("shop", _new("shoes", 2))
    loupe.inputs.add("other", _new("shoes", 1))  # same id "shoes-0" in another app is fine
    assert loupe.inputs.count("shop") == 2 and loupe.inputs.count("other") == 1
    loupe.inputs.delete("other", ["shoes-0"])
    assert loupe.inputs.get("shop", "shoes-0").id == "shoes-0"
    hits = loupe.search.by_input("shop", "shoes-1")
    assert {h.input.id for h in hits} == {"shoes-0", "shoes-1"}
    with pytest.raises(NotFound):
        loupe.inputs.get("other", "shoes-1")
    with pytest.raises(Conflict):
        loupe.apps.create("shop")
    with pytest.raises(NotFound, match="app 'ghost'"):
        loupe.inputs.list_page("ghost")
    summaries = {s.app.id: s for s in loupe.apps.summaries()}
    assert summaries["shop"].input_count == 2 and summaries["other"].input_count == 0
    loupe.apps.delete("other")
    assert [s.app.id for s in loupe.apps.summaries()] == ["shop"]


def test_the_same_image_uploaded_again_is_linked_not_doubled(loupe, app):
    """Issue 25: identical content in one app. Without an id the stored input answers (labels merged onto
    it); with an id of its own it is added as asked, and the answer names the input it repeats."""
    photo, other = (p.read_bytes() for p in dataset_images(CLOTHING / "train" / "hat", 2))
    first = loupe.inputs.add("shop", [NewInput(image=photo, concepts=["hat"], metadata={"keep": 1})]).inputs[0]
    again = loupe.inputs.add("shop", [NewInput(image=photo, concepts=["red"], metadata={"k": 1, "keep": 2}),
                                      NewInput(image=other), NewInput(image=other, not_concepts=["shoes"])])
    assert again.duplicate_of == [first.id, "", again.inputs[1].id] and again.linked == 2
    assert [r.id for r in again.inputs] == [first.id, again.inputs[1].id, again.inputs[1].id]
    assert loupe.inputs.count("shop") == 2
    stored = loupe.inputs.get("shop", first.id)
    assert stored.concepts == ["hat", "red"] and stored.metadata == {"keep": 1, "k": 1}  # stored values stay
    assert loupe.inputs.get("shop", again.inputs[1].id).not_concepts == ["shoes"]
    assert loupe.concepts.counts("shop", "red") == (1, 0)  # the label mirror saw the merge
    named = loupe.inputs.add("shop", [NewInput(image=photo, id="second-copy")])
    assert named.duplicate_of == [first.id] and named.linked == 0 and loupe.inputs.count("shop") == 3
    # Deleting the first holder: the named copy now stands for the content.
    loupe.inputs.delete("shop", [first.id])
    assert loupe.inputs.add("shop", [NewInput(image=photo)]).duplicate_of == ["second-copy"]
    assert loupe.inputs.count("shop") == 2


def test_unlabeled_inputs_are_listed_however_many_labeled_ones_are_newer(loupe, app):
    loupe.inputs.add("shop", [NewInput(image=p.read_bytes(), id=f"u{i}")
                              for i, p in enumerate(dataset_images(CLOTHING / "train" / "dress", 3))])
    loupe.inputs.add("shop", _new("hat", 4))  # newer, labeled: a plain page of 2 holds no unlabeled one
    loupe.inputs.edit("shop", "merge", [InputEdit(input_id="u1", not_concepts=["hat"])])  # a label, too
    assert [r.id for r in loupe.inputs.unlabeled("shop", per_page=1)] == ["u2"]
    assert [r.id for r in loupe.inputs.unlabeled("shop", page=2, per_page=1)] == ["u0"]
    assert loupe.inputs.unlabeled("shop", page=3, per_page=1) == []
