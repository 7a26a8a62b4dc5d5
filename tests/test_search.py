"""Embed-once, the per-app index as a rebuildable cache, and search by image, input, text and filters."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CLOTHING, dataset_images

from loupe.application import Loupe
from loupe.config import Config
from loupe.errors import CapabilityMissing
from loupe.intake.inputs import NewInput
from loupe.intake.labels import InputEdit
from loupe.store.filters import ConceptFilter, SearchFilter

CLASSES = ("shoes", "hat", "dress")


def _items(n_per_class=4):
    items = []
    for cls in CLASSES:
        for i, path in enumerate(dataset_images(CLOTHING / "train" / cls, n_per_class)):
            items.append(NewInput(image=path.read_bytes(), id=f"{cls}-{i}", concepts=[cls],
                                  metadata={"class": cls, "shelf": {"row": i % 2}}))
    return items


@pytest.fixture
def filled(loupe):
    loupe.apps.create("shop")
    loupe.inputs.add("shop", _items())
    return loupe


def test_embed_once_across_apps_and_within_a_batch(loupe):
    loupe.apps.create("a")
    loupe.apps.create("b")
    items = _items(2)
    assert loupe.inputs.add("a", items).embedded == 6
    again = [NewInput(image=i.image, id=f"b-{n}") for n, i in enumerate(items)]
    assert loupe.inputs.add("b", again).embedded == 0  # same bytes, same backbone: vectors reused
    dup = [NewInput(image=items[0].image, id="x"), NewInput(image=items[0].image, id="y"),
           NewInput(image=dataset_images(CLOTHING / "train" / "pants", 1)[0].read_bytes(), id="z")]
    assert loupe.inputs.add("b", dup).embedded == 1
    with loupe.store.read() as tx:
        stored = tx.get_embedding("effnet-lite2", loupe.inputs.get("a", "shoes-0").sha256)
    assert stored.shape == (1280,)


def test_other_backbone_embeds_separately(loupe):
    loupe.apps.create("lite2", "effnet-lite2")
    loupe.apps.create("lite0", "effnet-lite0")
    items = _items(1)
    loupe.inputs.add("lite2", items)
    assert loupe.inputs.add("lite0", items).embedded == 3  # never reuses another backbone's vectors
    hits = loupe.search.by_input("lite0", "hat-0")
    assert hits[0].input.id == "hat-0"


def test_search_by_input_and_by_image(filled):
    hits = filled.search.by_input("shop", "hat-2")
    assert hits[0].input.id == "hat-2" and hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # A held-out photo's nearest neighbours are mostly of its own class.
    query = dataset_images(CLOTHING / "test" / "shoes", 1)[0].read_bytes()
    top = filled.search.by_image("shop", query, per_page=4)
    assert sum(h.input.concepts == ["shoes"] for h in top) >= 3
    # Paging continues where the previous page stopped.
    page2 = filled.search.by_image("shop", query, page=2, per_page=4)
    assert not {h.input.id for h in top} & {h.input.id for h in page2}


def test_filtered_search(filled):
    query = dataset_images(CLOTHING / "test" / "shoes", 1)[0].read_bytes()
    only_hats = filled.search.by_image("shop", query, flt=SearchFilter(concepts=(ConceptFilter("hat"),)))
    assert {h.input.id for h in only_hats} == {f"hat-{i}" for i in range(4)}
    meta = SearchFilter(metadata={"shelf": {"row": 1}, "class": "dress"})
    assert {h.input.id for h in filled.search.by_image("shop", query, flt=meta)} == {"dress-1", "dress-3"}
    both = SearchFilter(concepts=(ConceptFilter("dress"),), metadata={"shelf": {"row": 0}})
    assert {h.input.id for h in filled.search.by_filter("shop", both)} == {"dress-0", "dress-2"}
    nothing = SearchFilter(concepts=(ConceptFilter("hat"), ConceptFilter("dress")))
    assert filled.search.by_image("shop", query, flt=nothing) == []
    filled.inputs.edit("shop", "merge", [InputEdit(input_id="hat-0", not_concepts=["dress"])])
    negated = SearchFilter(concepts=(ConceptFilter("dress", positive=False),))
    assert [h.input.id for h in filled.search.by_filter("shop", negated)] == ["hat-0"]


def test_deleted_inputs_leave_search_at_once(filled):
    filled.inputs.delete("shop", ["hat-1"])
    assert "hat-1" not in {h.input.id for h in filled.search.by_input("shop", "hat-0", per_page=50)}


def test_text_search_needs_a_text_tower(filled):
    with pytest.raises(CapabilityMissing, match="text"):
        filled.search.by_text("shop", "a red hat")


def test_text_search_with_clip(clip_weights, tmp_path):
    config = Config(data_dir=tmp_path / "d", weights={"clip-vit-b-32": str(clip_weights)})
    with Loupe(config) as loupe:
        loupe.apps.create("clip", "clip-vit-b-32")
        loupe.inputs.add("clip", _items(2))
        hits = loupe.search.by_text("clip", "a photo of a hat", per_page=3)
        assert len(hits) == 3
        assert all(-1.0 <= h.score <= 1.0 for h in hits)
        assert loupe.search.by_input("clip", "dress-1")[0].input.id == "dress-1"


def _reopen(config, backbones) -> Loupe:
    return Loupe(config, backbones=backbones)


def test_index_is_saved_reused_and_rebuilt(config, shared_backbones):
    loupe = _reopen(config, shared_backbones)
    loupe.apps.create("shop")
    loupe.inputs.add("shop", _items(2))
    expected = [h.input.id for h in loupe.search.by_input("shop", "hat-1")]
    loupe.close()

    loupe = _reopen(config, shared_backbones)  # saved copy matches LMDB: loaded, not rebuilt
    assert [h.input.id for h in loupe.search.by_input("shop", "hat-1")] == expected
    assert loupe.context.indexes.rebuilds == 0
    path = loupe.context.indexes.path("shop")
    loupe.close()

    path.unlink()
    loupe = _reopen(config, shared_backbones)  # missing: rebuilt from LMDB, same answers
    assert [h.input.id for h in loupe.search.by_input("shop", "hat-1")] == expected
    assert loupe.context.indexes.rebuilds == 1
    assert path.exists()
    loupe.close()


def test_stale_index_is_detected_after_a_crash(config, shared_backbones):
    loupe = _reopen(config, shared_backbones)
    loupe.apps.create("shop")
    loupe.inputs.add("shop", _items(1))
    loupe.search.by_input("shop", "hat-0")
    loupe.close()  # index saved with 3 inputs

    crashed = _reopen(config, shared_backbones)
    crashed.search.by_input("shop", "hat-0")
    extra = NewInput(image=dataset_images(CLOTHING / "train" / "pants", 1)[0].read_bytes(), id="pants-0")
    crashed.inputs.add("shop", [extra])
    crashed.inputs.delete("shop", ["hat-0"])
    crashed.store.close()  # "killed": LMDB committed, the saved index never updated

    loupe = _reopen(config, shared_backbones)
    ids = {h.input.id for h in loupe.search.by_input("shop", "pants-0")}
    assert loupe.context.indexes.rebuilds == 1
    assert ids == {"pants-0", "shoes-0", "dress-0"}
    assert loupe.context.index(loupe.apps.get("shop")).count() == 3
    loupe.close()


def test_index_compresses_past_its_threshold_and_reranks_exactly(tmp_path, shared_backbones):
    config = Config(data_dir=tmp_path / "d", approx_index_threshold=3, compressed_index_threshold=20)
    photos = [p for name in ("hat", "pants", "shoes") for p in dataset_images(CLOTHING / "train" / name, 8)]
    with Loupe(config, backbones=shared_backbones) as loupe:
        loupe.apps.create("shop")
        loupe.inputs.add("shop", [NewInput(image=p.read_bytes(), id=f"{p.parent.name}-{i}")
                                  for i, p in enumerate(photos[:12])])
        assert loupe.context.index(loupe.apps.get("shop")).kind == "ivf"
        loupe.inputs.add("shop", [NewInput(image=p.read_bytes(), id=f"{p.parent.name}-{i}")
                                  for i, p in enumerate(photos[12:], start=12)])
        index = loupe.context.index(loupe.apps.get("shop"))
        assert index.kind == "ivfpq" and index.count() == 24
        hit = loupe.search.by_input("shop", "hat-0")[0]
        assert hit.input.id == "hat-0" and abs(hit.score - 1.0) < 1e-3  # re-ranked with the stored vector
        loupe.inputs.delete("shop", ["hat-0"])
        assert "hat-0" not in [h.input.id for h in loupe.search.by_input("shop", "hat-1", per_page=30)]
    with Loupe(config, backbones=shared_backbones) as loupe:  # saved and loaded again, still re-ranked
        index = loupe.context.index(loupe.apps.get("shop"))
        assert index.kind == "ivfpq" and index.count() == 23 and loupe.context.indexes.rebuilds == 0
        assert abs(loupe.search.by_input("shop", "hat-1")[0].score - 1.0) < 1e-3


def test_index_switches_to_ivf_past_threshold(tmp_path, shared_backbones):
    config = Config(data_dir=tmp_path / "d", approx_index_threshold=5)
    with Loupe(config, backbones=shared_backbones) as loupe:
        loupe.apps.create("shop")
        loupe.inputs.add("shop", _items(1))
        index = loupe.context.index(loupe.apps.get("shop"))
        assert index.kind == "exact"
        loupe.inputs.add("shop", [NewInput(image=p.read_bytes(), id=p.stem) for p in
                                  dataset_images(CLOTHING / "train" / "pants", 4)])
        index = loupe.context.index(loupe.apps.get("shop"))
        assert index.kind == "ivf" and index.count() == 7
        assert loupe.search.by_input("shop", "hat-0")[0].input.id == "hat-0"
        vectors_match = np.isclose(loupe.search.by_input("shop", "hat-0")[0].score, 1.0, atol=1e-3)
        assert vectors_match
