"""Custom models on real EfficientNet-Lite embeddings of Clothing-10 photos."""

from __future__ import annotations

import io
import time

import msgspec
import numpy as np
import pytest
from conftest import CLOTHING, dataset_images
from PIL import Image

from loupe.application import Loupe
from loupe.config import Config
from loupe.errors import Conflict, InvalidArgument, ModelNotTrained, NotFound
from loupe.intake.inputs import NewInput
from loupe.intake.labels import InputEdit
from loupe.learning.blend import scaled_to
from loupe.store.records import BlendParams

CLASSES = sorted(p.name for p in (CLOTHING / "train").iterdir())
# Measured: 0.80 top-1 on these 100 held-out photos (10 per class) from 20 training photos per class
# (0.79 when the head used a fixed C=2).
MIN_TOP1 = 0.65


def _train_items(cls: str, n: int, start: int = 0) -> list[NewInput]:
    return [NewInput(image=p.read_bytes(), id=f"{cls}-{start + i}", concepts=[cls])
            for i, p in enumerate(dataset_images(CLOTHING / "train" / cls, n, start))]


def resaved(data: bytes) -> bytes:
    """The same photo saved again as JPEG quality 90: new bytes, all but the same embedding."""
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


def near_duplicate(data: bytes) -> bytes:
    """The same photo re-encoded smaller: new bytes, new hash, nearly the same embedding."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    img = img.resize((img.width * 9 // 10, img.height * 9 // 10))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=70)
    return out.getvalue()


@pytest.fixture(scope="module")
def shop(tmp_path_factory, shared_backbones):
    """App 'shop': 20 labeled training photos per class. Held-out test photos are returned as bytes
    (their vectors are cached by an unlabeled app in the same store, so predicting them is quick)."""
    config = Config(data_dir=tmp_path_factory.mktemp("models"), auto_retrain=False)
    loupe = Loupe(config, backbones=shared_backbones)
    loupe.apps.create("shop")
    loupe.inputs.add("shop", [item for cls in CLASSES for item in _train_items(cls, 20)])
    held_out = [(p.read_bytes(), cls) for cls in CLASSES for p in dataset_images(CLOTHING / "test" / cls, 10)]
    loupe.apps.create("cache")
    loupe.inputs.add("cache", [NewInput(image=data) for data, _ in held_out])
    yield loupe, held_out
    loupe.close()


def _scores(prediction) -> dict[str, float]:
    return {c.concept_id: c.value for c in prediction.concepts}


def test_mutually_exclusive_model_predicts_held_out_photos(shop):
    loupe, held_out = shop
    model, untrained = loupe.models.create("shop", "clothes", concept_ids=CLASSES, mutually_exclusive=True,
                                           closed_environment=True)
    assert untrained.status == "untrained"
    with pytest.raises(ModelNotTrained):
        loupe.predictions.predict("shop", "clothes", [held_out[0][0]]).predictions
    version = loupe.trainer.train("shop", "clothes")
    assert version.status == "trained" and version.train_size == 200
    assert version.positives == {c: 20 for c in CLASSES}
    assert version.train_seconds < 5
    predictions = loupe.predictions.predict("shop", "clothes", [data for data, _ in held_out]).predictions
    top1 = np.mean([p.concepts[0].concept_id == cls for p, (_, cls) in zip(predictions, held_out)])
    print(f"10-class clothing, 20 shots: top-1 {top1:.2f} on {len(held_out)} held-out photos")
    assert top1 >= MIN_TOP1
    for p in predictions:
        values = [c.value for c in p.concepts]
        assert {c.concept_id for c in p.concepts} == set(CLASSES)
        assert values == sorted(values, reverse=True)
        assert all(0.0 <= v <= 1.0 for v in values)
        assert sum(values) == pytest.approx(1.0, abs=1e-4)
        assert p.version_id == version.id


def test_multi_label_model_scores_each_concept_alone(shop):
    loupe, held_out = shop
    loupe.models.create("shop", "tags", concept_ids=["shoes", "hat", "dress"], closed_environment=True)
    loupe.trainer.train("shop", "tags")
    sample = [data for data, cls in held_out if cls in ("shoes", "hat", "dress")]
    predictions = loupe.predictions.predict("shop", "tags", sample).predictions
    sums = [sum(c.value for c in p.concepts) for p in predictions]
    assert any(abs(s - 1.0) > 0.05 for s in sums)
    assert all(0 <= c.value <= 1 for p in predictions for c in p.concepts)
    truth = [cls for _, cls in held_out if cls in ("shoes", "hat", "dress")]
    assert np.mean([p.concepts[0].concept_id == t for p, t in zip(predictions, truth)]) >= 0.8


def test_label_correction_changes_near_duplicates_at_once(shop):
    loupe, _ = shop
    loupe.apps.create("fix")
    loupe.inputs.add("fix", _train_items("shoes", 6) + _train_items("hat", 6))
    original = loupe.inputs.image("fix", "shoes-0")
    loupe.inputs.add("fix", [NewInput(image=near_duplicate(original), id="query")])
    loupe.models.create("fix", "m", concept_ids=["shoes", "hat"], closed_environment=True)
    version = loupe.trainer.train("fix", "m")

    [before] = loupe.predictions.predict("fix", "m", ["query"]).predictions
    assert before.neighbours[0].input_id == "shoes-0" and before.neighbours[0].similarity > 0.9
    loupe.inputs.edit("fix", "merge", [InputEdit(input_id="shoes-0", concepts=["hat"], not_concepts=["shoes"])])
    [after] = loupe.predictions.predict("fix", "m", ["query"]).predictions

    assert after.version_id == version.id  # no retrain happened: the neighbours' votes moved
    assert _scores(after)["shoes"] < _scores(before)["shoes"] - 0.15
    assert _scores(after)["hat"] > _scores(before)["hat"] + 0.15


def test_explicit_negatives_lower_the_negated_concept(shop):
    loupe, _ = shop
    loupe.apps.create("neg")
    loupe.inputs.add("neg", _train_items("shoes", 6) + _train_items("hat", 6))
    # A shoe the model has not seen, and a near copy of it that a person marks as "not shoes".
    shoe = dataset_images(CLOTHING / "train" / "shoes", 1, start=10)[0].read_bytes()
    loupe.inputs.add("neg", [NewInput(image=shoe, id="q"), NewInput(image=near_duplicate(shoe), id="q2")])
    loupe.models.create("neg", "m", concept_ids=["shoes", "hat"], closed_environment=True)
    loupe.trainer.train("neg", "m")
    before = _scores(loupe.predictions.predict("neg", "m", ["q"]).predictions[0])["shoes"]

    loupe.inputs.edit("neg", "merge", [InputEdit(input_id="q2", not_concepts=["shoes"])])
    instantly = _scores(loupe.predictions.predict("neg", "m", ["q"]).predictions[0])["shoes"]
    version = loupe.trainer.train("neg", "m")
    assert version.negatives["shoes"] == 7  # 6 hats (implied) + 1 explicit
    retrained = _scores(loupe.predictions.predict("neg", "m", ["q"]).predictions[0])["shoes"]
    assert before > 0.5
    assert instantly < before - 0.15
    assert retrained < before - 0.15


def test_training_errors_are_clear(shop):
    loupe, _ = shop
    loupe.models.create("shop", "empty")
    failed = loupe.trainer.train("shop", "empty")
    assert failed.status == "failed" and "no concepts" in failed.detail
    loupe.models.create("shop", "ghost", concept_ids=["shoes", "unicorn"])
    failed = loupe.trainer.train("shop", "ghost")
    assert failed.status == "failed" and failed.failure == "no_positives" and "unicorn" in failed.detail
    with pytest.raises(Conflict):
        loupe.models.create("shop", "empty")
    with pytest.raises(NotFound):
        loupe.trainer.train("shop", "nope")
    with pytest.raises(ModelNotTrained):
        loupe.predictions.predict("shop", "ghost", ["shoes-0"]).predictions


def test_backbone_unavailable_fails_the_version(tmp_path, shared_backbones):
    config = Config(data_dir=tmp_path / "d", auto_retrain=False,
                    weights={"clip-vit-b-32": str(tmp_path / "deleted.pt")})
    with Loupe(config) as loupe:
        from loupe.store.records import App

        with loupe.store.write() as tx:  # an app made where its CLIP weights were still on disk
            tx.put_app(App(id="old", backbone="clip-vit-b-32", created_at=0.0))
        loupe.models.create("old", "m", concept_ids=["a", "b"])
        with pytest.raises(Exception, match="weights file not found"):
            loupe.trainer.train("old", "m")
        assert loupe.models.version("old", "m").status == "failed"


def test_versions_are_listed_kept_and_deletable(shop):
    loupe, held_out = shop
    loupe.models.create("shop", "vers", concept_ids=["shoes", "hat"], closed_environment=True)
    first = loupe.trainer.train("shop", "vers")
    second = loupe.trainer.train("shop", "vers")
    listed = loupe.models.versions("shop", "vers")
    assert [v.id for v in listed][:2] == [second.id, first.id] and listed[-1].status == "untrained"
    assert [v.seq for v in listed] == sorted((v.seq for v in listed), reverse=True)
    old = loupe.predictions.predict("shop", "vers", [held_out[0][0]], version_id=first.id).predictions[0]
    assert old.version_id == first.id
    loupe.models.delete_version("shop", "vers", second.id)
    assert loupe.predictions.predict("shop", "vers", [held_out[0][0]]).predictions[0].version_id == first.id
    loupe.models.delete("shop", "vers")
    with pytest.raises(NotFound):
        loupe.models.get("shop", "vers")


def test_large_trains_are_queued(tmp_path, shared_backbones):
    config = Config(data_dir=tmp_path / "d", auto_retrain=False, sync_train_max_examples=0)
    with Loupe(config, backbones=shared_backbones) as loupe:
        loupe.apps.create("a")
        loupe.inputs.add("a", _train_items("shoes", 4) + _train_items("hat", 4))
        loupe.models.create("a", "m", concept_ids=["shoes", "hat"], mutually_exclusive=True)
        queued = loupe.trainer.train("a", "m")
        assert queued.status in ("queued", "training", "trained")
        deadline = time.time() + 60
        while loupe.models.version("a", "m", queued.id).status != "trained":
            assert time.time() < deadline
            time.sleep(0.05)


def test_label_edits_trigger_one_debounced_retrain(tmp_path, shared_backbones):
    config = Config(data_dir=tmp_path / "d", retrain_delay_seconds=0.5)
    with Loupe(config, backbones=shared_backbones) as loupe:
        loupe.apps.create("a")
        loupe.inputs.add("a", _train_items("shoes", 5) + _train_items("hat", 5))
        loupe.models.create("a", "m", concept_ids=["shoes", "hat"], closed_environment=True)
        first = loupe.trainer.train("a", "m")
        for i in range(3):  # a person fixing labels, one click after another
            loupe.inputs.edit("a", "merge", [InputEdit(input_id=f"hat-{i}", not_concepts=["shoes"])])
        deadline = time.time() + 30
        while (latest := loupe.models.version("a", "m")).id == first.id or latest.status != "trained":
            assert time.time() < deadline, "no retrain happened"
            time.sleep(0.05)
        time.sleep(1.0)
        trained = [v for v in loupe.models.versions("a", "m") if v.status == "trained"]
        assert len(trained) == 2  # three edits, one retrain
        assert trained[0].negatives["shoes"] == 5


def test_solver_matches_scikit_learn(shop):
    """Our L-BFGS multinomial head vs scikit-learn's LogisticRegression, same data and penalty."""
    from sklearn.linear_model import LogisticRegression

    from loupe.learning.heads import exclusive_targets, fit_head

    loupe, held_out = shop
    app = loupe.apps.get("shop")
    x = loupe.context.embeddings_of(app, np.arange(1, 201, dtype=np.int64))
    y = np.repeat(np.arange(10), 20)
    positive = np.eye(10, dtype=bool)[y]
    c = 2.0
    ours = fit_head(x, exclusive_targets(positive, np.zeros_like(positive)), True, l2=1 / (c * len(x)), max_iter=500)
    ref = LogisticRegression(C=c, max_iter=5000, tol=1e-8).fit(x, y)
    test = loupe.context.embeddings_of(loupe.apps.get("cache"), np.arange(1, 101, dtype=np.int64))
    np.testing.assert_allclose(ours.probabilities(test), ref.predict_proba(test), atol=0.03)


def test_evaluation_matches_scikit_learn_on_the_same_folds(shop):
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        confusion_matrix,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    loupe, _ = shop
    loupe.models.create("shop", "eval", concept_ids=CLASSES, mutually_exclusive=True, closed_environment=True)
    version = loupe.trainer.train("shop", "eval")
    evaluation = loupe.quality.evaluate("shop", "eval", version.id).evaluation
    assert evaluation.status == "evaluated" and evaluation.folds == 5
    assert loupe.models.version("shop", "eval", version.id).evaluation.status == "evaluated"  # stored
    rows = evaluation.predictions
    assert len(rows) == 200 and {r.fold for r in rows} == set(range(5))
    scores = np.array([r.scores for r in rows])
    actual = np.array([CLASSES.index(r.positives[0]) for r in rows])
    guess = scores.argmax(axis=1)
    precision, recall, f1, _ = precision_recall_fscore_support(actual, guess, labels=range(10), zero_division=0)
    for j, metrics in enumerate(evaluation.concepts):
        assert metrics.concept_id == CLASSES[j] and metrics.num_pos == 20 and metrics.num_neg == 180
        assert metrics.roc_auc == pytest.approx(roc_auc_score(actual == j, scores[:, j]), abs=1e-9)
        assert metrics.average_precision == pytest.approx(average_precision_score(actual == j, scores[:, j]), abs=1e-9)
        assert (metrics.precision, metrics.recall, metrics.f1) == pytest.approx((precision[j], recall[j], f1[j]))
        assert metrics.roc_curve and metrics.pr_curve
    assert evaluation.top1_accuracy == pytest.approx(accuracy_score(actual, guess))
    assert evaluation.confusion == confusion_matrix(actual, guess, labels=range(10)).tolist()
    assert {r.input_id for r in evaluation.misclassified} == {rows[i].input_id for i in np.flatnonzero(guess != actual)}
    print(f"5-fold top-1 {evaluation.top1_accuracy:.3f}, macro AUC "
          f"{np.mean([m.roc_auc for m in evaluation.concepts]):.3f}")
    assert evaluation.top1_accuracy > 0.6


def test_multi_label_evaluation_matches_scikit_learn(shop):
    from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

    loupe, _ = shop
    loupe.models.create("shop", "eval-ml", concept_ids=["shoes", "hat", "dress"], closed_environment=True)
    version = loupe.trainer.train("shop", "eval-ml")
    evaluation = loupe.quality.evaluate("shop", "eval-ml", version.id).evaluation
    scores = np.array([r.scores for r in evaluation.predictions])
    truth = np.array([[c in r.positives for c in ("shoes", "hat", "dress")] for r in evaluation.predictions])
    for j, metrics in enumerate(evaluation.concepts):
        assert metrics.roc_auc == pytest.approx(roc_auc_score(truth[:, j], scores[:, j]), abs=1e-9)
        p, r, f, _ = precision_recall_fscore_support(truth[:, j], scores[:, j] >= 0.5, average="binary", zero_division=0)
        assert (metrics.precision, metrics.recall, metrics.f1) == pytest.approx((p, r, f))
    assert evaluation.confusion == []  # only mutually exclusive models have one


def test_data_quality_advice_names_the_inputs_to_fix(shop):
    loupe, _ = shop
    loupe.apps.create("adv")
    hat_files = dataset_images(CLOTHING / "train" / "hat", 37)
    items = _train_items("shoes", 5) + [NewInput(image=p.read_bytes(), id=f"hat-{i}", concepts=["hat"])
                                        for i, p in enumerate(hat_files[:36])]
    items.append(NewInput(image=hat_files[36].read_bytes(), id="wrong", concepts=["shoes"]))  # a hat, mislabeled
    shoe = loupe.inputs.image("shop", "shoes-0")
    items.append(NewInput(image=near_duplicate(shoe), id="dup", concepts=["hat"]))  # a shoe's copy, as hat
    loupe.inputs.add("adv", items)
    loupe.models.create("adv", "m", concept_ids=["shoes", "hat"], mutually_exclusive=True, closed_environment=True)
    loupe.trainer.train("adv", "m")
    findings = loupe.quality.advice("adv", "m").result()
    kinds = {f.kind for f in findings}
    assert {"few_examples", "imbalance", "suspected_mislabel", "near_duplicates"} <= kinds
    few = [f for f in findings if f.kind == "few_examples"]
    assert [f.concept_ids for f in few] == [["shoes"]] and "6 positive examples" in few[0].message
    imbalance = next(f for f in findings if f.kind == "imbalance")
    assert imbalance.concept_ids == ["hat", "shoes"] and imbalance.score == pytest.approx(37 / 6)
    mislabels = [f for f in findings if f.kind == "suspected_mislabel"]
    assert "wrong" in {i for f in mislabels for i in f.input_ids}
    assert next(f for f in mislabels if f.input_ids == ["wrong"]).suggested_concept == "hat"
    dups = [f for f in findings if f.kind == "near_duplicates"]
    assert any(set(f.input_ids) == {"shoes-0", "dup"} for f in dups)
    # One click: the person accepts the suggestion; the finding is gone on the next look.
    loupe.inputs.edit("adv", "overwrite", [InputEdit(input_id="wrong", concepts=["hat"])])
    after = loupe.quality.advice("adv", "m").result()
    assert "wrong" not in {i for f in after if f.kind == "suspected_mislabel" for i in f.input_ids}


def test_confusable_concepts_are_a_finding_not_a_pile_of_mislabels(shop):
    """20 photos per class of Clothing-10's own labels: the held-out model often mixes up tops (longsleeve,
    outwear, shirt, t-shirt); that is reported per pair, with the inputs that sit between, and within such
    a pair only a label the model all but rules out (<= 1 % of its belief) is called a mislabel. Measured
    here: 10 suspected mislabels with the rule, 19 without."""
    from loupe.learning.advice import confusable_concepts, suspected_mislabels

    loupe, _ = shop
    loupe.models.create("shop", "confusable", concept_ids=CLASSES, mutually_exclusive=True)
    version = loupe.trainer.train("shop", "confusable")
    evaluated = loupe.quality.evaluate("shop", "confusable", version.id)
    findings = loupe.quality.advice("shop", "confusable").result()
    pairs = [f for f in findings if f.kind == "confusable_concepts"]
    tops = {"longsleeve", "outwear", "shirt", "t-shirt"}
    assert any(set(f.concept_ids) <= tops for f in pairs), [f.concept_ids for f in pairs]
    pair = next(f for f in pairs if set(f.concept_ids) <= tops)
    assert f"{pair.concept_ids[0]!r} and {pair.concept_ids[1]!r} are often confused: {len(pair.input_ids)} inputs" \
        in pair.message and len(pair.input_ids) >= 3
    mislabels = [f for f in findings if f.kind == "suspected_mislabel"]
    assert evaluated.evaluation is not None
    ts, x = loupe.quality.examples_of("shop", version)
    plain = suspected_mislabels(x, ts, CLASSES, True, evaluated.evaluation)
    assert len(mislabels) < len(plain)
    assert confusable_concepts(CLASSES, evaluated.evaluation) == pairs


def test_a_dismissed_mislabel_stays_dismissed(tmp_path, shared_backbones):
    """A person says the label is right: the finding does not come back, across a restart, until the
    model is deleted."""
    config = Config(data_dir=tmp_path / "d", auto_retrain=False)
    hats = dataset_images(CLOTHING / "train" / "hat", 9)
    items = _train_items("shoes", 8) + [NewInput(image=p.read_bytes(), id=f"hat-{i}", concepts=["hat"])
                                        for i, p in enumerate(hats[:8])]
    items.append(NewInput(image=hats[8].read_bytes(), id="odd", concepts=["shoes"]))
    with Loupe(config, backbones=shared_backbones) as loupe:
        loupe.apps.create("d")
        loupe.inputs.add("d", items)
        loupe.models.create("d", "m", concept_ids=["shoes", "hat"], mutually_exclusive=True)
        loupe.trainer.train("d", "m")
        flagged = {f.input_ids[0] for f in loupe.quality.advice("d", "m").result() if f.kind == "suspected_mislabel"}
        assert "odd" in flagged
        loupe.quality.dismiss("d", "m", "odd", "shoes")
        with pytest.raises(NotFound):
            loupe.quality.dismiss("d", "m", "no-such-input", "shoes")
    with Loupe(config, backbones=shared_backbones) as loupe:  # a restart
        again = {f.input_ids[0] for f in loupe.quality.advice("d", "m").result() if f.kind == "suspected_mislabel"}
        assert "odd" not in again and again == flagged - {"odd"}
        loupe.models.delete("d", "m")
        loupe.models.create("d", "m", concept_ids=["shoes", "hat"], mutually_exclusive=True)
        loupe.trainer.train("d", "m")
        assert "odd" in {f.input_ids[0] for f in loupe.quality.advice("d", "m").result() if f.kind == "suspected_mislabel"}


def test_general_model_and_workflow_with_clip(clip_weights, tmp_path):
    """Zero-shot scores from the CLIP text tower (random weights here: shapes and rules, not accuracy)."""
    from loupe.models.workflows import WorkflowStep

    config = Config(data_dir=tmp_path / "d", auto_retrain=False, weights={"clip-vit-b-32": str(clip_weights)})
    with Loupe(config) as loupe:
        loupe.apps.create("clip", "clip-vit-b-32")
        loupe.inputs.add("clip", _train_items("shoes", 3) + _train_items("hat", 3))
        loupe.models.create("clip", "m", concept_ids=["shoes", "hat"], closed_environment=True)
        loupe.trainer.train("clip", "m")
        query = dataset_images(CLOTHING / "test" / "hat", 1)[0].read_bytes()
        calls = []
        backbone = loupe.context.backbone(loupe.apps.get("clip"))
        original = backbone.features
        backbone.features = lambda arrays: calls.append(len(arrays)) or original(arrays)
        try:
            results = loupe.workflows.run("clip", [query], [
                WorkflowStep("general", concepts=("shoe", "hat", "dog")), WorkflowStep("m")], time.monotonic() + 60)
        finally:
            backbone.features = original
        assert calls == [1]  # one image, embedded once for both models
        general, custom = results
        assert [c.concept_id for c in general.answers[0].prediction.concepts] != []
        assert {c.concept_id for c in general.answers[0].prediction.concepts} == {"shoe", "hat", "dog"}
        assert sum(c.value for c in general.answers[0].prediction.concepts) == pytest.approx(1.0, abs=1e-5)
        assert {c.concept_id for c in custom.answers[0].prediction.concepts} == {"shoes", "hat"}
        stored = loupe.inputs.list_page("clip", per_page=1)[0].id
        by_app_concepts = loupe.predictions.predict("clip", "general", [stored]).predictions
        assert {c.concept_id for c in by_app_concepts[0].concepts} == {"shoes", "hat"}


def test_offline_general_model_scores_imagenet_concepts_with_one_embedding(shop):
    """EfficientNet apps: the General model is the ImageNet-1k classifier over the stored features, at
    Clarifai's id and an alias, in a workflow with a custom model (one embedding), by id or image."""
    import io

    import skimage.data
    from PIL import Image

    from loupe.models.general import GENERAL_MODEL_ID, imagenet_classes
    from loupe.models.workflows import WorkflowStep

    loupe, _ = shop
    loupe.models.create("shop", "garments", concept_ids=CLASSES, mutually_exclusive=True)
    loupe.trainer.train("shop", "garments")
    buf = io.BytesIO()
    Image.fromarray(skimage.data.coffee()).save(buf, "JPEG", quality=92)
    coffee = buf.getvalue()
    backbone = loupe.context.backbone(loupe.apps.get("shop"))
    calls = []
    original = backbone.features
    backbone.features = lambda arrays: calls.append(len(arrays)) or original(arrays)
    try:
        general, custom = loupe.workflows.run("shop", [coffee], [WorkflowStep(GENERAL_MODEL_ID), WorkflowStep("garments")],
                                       time.monotonic() + 60)
    finally:
        backbone.features = original
    assert calls == [1]
    top = general.answers[0].prediction.concepts[0]
    assert top.concept_id == "n07920052" and imagenet_classes()[1][top.concept_id] == "espresso" and top.value > 0.5
    assert len(general.answers[0].prediction.concepts) == 1000 and len(custom.answers[0].prediction.concepts) == len(CLASSES)
    answer = loupe.predictions.predict("shop", "general-image-recognition", ["shoes-0", coffee])
    assert answer.model.id == GENERAL_MODEL_ID and answer.version.status == "trained"
    assert answer.predictions[1].concepts[0].concept_id == "n07920052"
    shoe_guess = imagenet_classes()[1][answer.predictions[0].concepts[0].concept_id]
    assert any(w in shoe_guess.lower() for w in ("shoe", "sandal", "boot", "sneaker", "clog", "loafer")), shoe_guess


def test_few_shot_confidences_mean_what_they_say(shop):
    """With 2 photos per concept the penalty is strong and the head's logits small; the temperature,
    set relative to their spread, keeps the top confidence near the accuracy it turns out to have
    (a fixed temperature gave ~0.2 confidence to answers right ~60 % of the time)."""
    loupe, held_out = shop
    loupe.apps.create("few")
    loupe.inputs.add("few", [item for cls in CLASSES for item in _train_items(cls, 2)])
    loupe.models.create("few", "m", concept_ids=CLASSES, mutually_exclusive=True, closed_environment=True)
    loupe.trainer.train("few", "m")
    predictions = loupe.predictions.predict("few", "m", [data for data, _ in held_out]).predictions
    accuracy = np.mean([p.concepts[0].concept_id == cls for p, (_, cls) in zip(predictions, held_out)])
    confidence = np.mean([p.concepts[0].value for p in predictions])
    print(f"2 shots: top-1 {accuracy:.2f}, mean top confidence {confidence:.2f}")
    assert accuracy > 0.3  # chance is 0.1
    assert abs(confidence - accuracy) < 0.15


def test_versions_stored_before_relative_temperatures_keep_their_temperature():
    """Blend parameters written before relative_temperature existed decode, and are not rescaled."""
    stored = msgspec.msgpack.encode({"head_weight": 3.0, "k": 10, "sharpness": 20.0, "temperature": 0.5})
    params = msgspec.msgpack.decode(stored, type=BlendParams)
    assert params.relative_temperature is None
    assert scaled_to(params, 0.05).temperature == 0.5
    assert scaled_to(msgspec.structs.replace(params, relative_temperature=0.4), 0.05).temperature == pytest.approx(0.02)


def test_blend_cross_validation_samples_every_concept(monkeypatch):
    """102 concepts x 16 examples (more rows than the blend's cross-validation takes): every concept keeps
    enough positives in the sample, in every row order, so cross-validation always runs."""
    from loupe.learning import training
    from loupe.learning.training_set import TrainingSet

    rng = np.random.default_rng(0)
    c, per = 102, 16
    centres = rng.standard_normal((c, 64)).astype(np.float32)
    labels = np.repeat(np.arange(c), per)
    x = centres[labels] + 0.8 * rng.standard_normal((len(labels), 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ran = []
    monkeypatch.setattr(training, "choose_blend", lambda *a, **k: (ran.append(1), (training.DEFAULT_BLEND, None))[1])
    monkeypatch.setattr(training, "cross_validate", lambda *a, **k: None)
    monkeypatch.setattr(training, "held_out_blend", lambda *a, **k: None)
    for order in range(20):
        perm = np.random.default_rng(order).permutation(len(labels))
        positive = np.zeros((len(labels), c), bool)
        positive[np.arange(len(labels)), labels[perm]] = True
        ts = TrainingSet(seqs=np.arange(len(labels)), input_ids=[str(i) for i in range(len(labels))],
                         positive=positive, negative=~positive, explicit_negative=np.zeros_like(positive))
        rows = training.cv_rows(positive, training.CV_MAX_ROWS, seed=order)
        assert positive[rows].sum(axis=0).min() >= training.MIN_POSITIVES_FOR_CV + 1
        assert len(rows) <= max(training.CV_MAX_ROWS, c * (training.MIN_POSITIVES_FOR_CV + 1))
        training.select_blend(x[perm], ts, True, training.targets_for(True), seed=order)
    assert len(ran) == 20  # cross-validation chose the blend every time, never the silent default


def test_suggestions_rank_an_uncovered_concept_first(tmp_path, shared_backbones):
    """Two concepts labeled, a third present only unlabeled: suggestions come from it (the region no
    label covers), each with the model's guess; labeled inputs are never suggested. (A closed
    environment: in an open one the dress labeled with a concept the model lacks is a negative, not in
    the pool. A model that, mutually exclusive, is sure a dress is shoes or a hat - as it should be,
    now that unlabeled inputs no longer teach it doubt - may rank an unsure shoe before it.)"""
    with Loupe(Config(data_dir=tmp_path / "d", auto_retrain=False), backbones=shared_backbones) as loupe:
        loupe.apps.create("s")
        loupe.inputs.add("s", _train_items("shoes", 6) + _train_items("hat", 6))
        loupe.inputs.add("s", [NewInput(image=p.read_bytes(), id=f"{cls}-u{i}")
                               for cls in ("shoes", "hat") for i, p in enumerate(dataset_images(CLOTHING / "train" / cls, 4, start=6))]
                         + [NewInput(image=p.read_bytes(), id=f"dress-u{i}")
                            for i, p in enumerate(dataset_images(CLOTHING / "train" / "dress", 8))])
        loupe.models.create("s", "m", concept_ids=["shoes", "hat", "dress"], mutually_exclusive=True,
                            closed_environment=True)
        untrained = loupe.quality.suggestions("s", "m", count=3).result()
        assert len(untrained) == 3 and all(s.concept_id is None for s in untrained)
        loupe.inputs.edit("s", "merge", [InputEdit(input_id="dress-u7", concepts=["dress"])])
        loupe.models.update("s", "m", concept_ids=["shoes", "hat"], action="overwrite")
        loupe.trainer.train("s", "m")
        found = loupe.quality.suggestions("s", "m", count=4).result()
        dresses = [s for s in found if s.input_id.startswith("dress-u")]
        assert len(dresses) >= 2 and all(s.concept_id in ("shoes", "hat") for s in found), found
        assert not {s.input_id for s in found} & {f"{c}-{i}" for c in ("shoes", "hat") for i in range(6)}
        assert "dress-u7" in {s.input_id for s in loupe.quality.suggestions("s", "m", count=20).result()}  # not this model's label
        with pytest.raises(InvalidArgument):
            loupe.quality.suggestions("s", "m", count=0).result()


def test_the_default_model_learns_from_unlabeled_inputs(tmp_path, shared_backbones):
    """One labeled photo per concept and the rest of the training photos in the app unlabeled, a mutually
    exclusive model made with the defaults (open environment): the unlabeled photos are never its
    negatives, versions trained with self-training (validation said yes) beat those trained without and
    the labeled-only probe (logistic regression, C=10) on photos neither saw, and record what they used
    and why. Measured on these 5 draws (AMX CPU): 0.528 without, 0.546 with, probe 0.528 mean top-1, no
    draw worse (a small pool of 190; benchmarks/few_shot.py measures whole datasets)."""
    from sklearn.linear_model import LogisticRegression

    held_out = [(p.read_bytes(), cls) for cls in CLASSES for p in dataset_images(CLOTHING / "test" / cls, 10)]
    accuracy: dict[bool | str, list[float]] = {False: [], True: [], "probe": []}
    for seed in range(5):
        rng = np.random.default_rng(seed)
        labeled, unlabeled = [], []
        for cls in CLASSES:
            files = dataset_images(CLOTHING / "train" / cls, 20)
            first = int(rng.integers(len(files)))
            labeled.append(NewInput(image=files[first].read_bytes(), id=f"{cls}-l", concepts=[cls]))
            unlabeled += [NewInput(image=p.read_bytes(), id=f"{cls}-u{i}") for i, p in enumerate(files) if i != first]
        for semi in (False, True):
            with Loupe(Config(data_dir=tmp_path / f"d{seed}{semi}", auto_retrain=False, semi_supervised=semi),
                       backbones=shared_backbones) as loupe:
                loupe.apps.create("a")
                loupe.inputs.add("a", labeled + unlabeled)
                loupe.models.create("a", "m", concept_ids=CLASSES, mutually_exclusive=True)
                version = loupe.trainer.train("a", "m")
                answers = loupe.predictions.predict("a", "m", [data for data, _ in held_out]).predictions
                accuracy[semi].append(float(np.mean([a.concepts[0].concept_id == cls
                                                     for a, (_, cls) in zip(answers, held_out)])))
                assert version.unlabeled_seen == (len(unlabeled) if semi else 0)
                assert version.negatives == dict.fromkeys(CLASSES, len(CLASSES) - 1)  # the other labels only
                if semi:
                    assert version.unlabeled_rule in ("pseudo_labels", "ignored")
                    assert "never a negative" in version.unlabeled_reason, version.unlabeled_reason
                    if version.pseudo_labels:
                        assert version.unlabeled_rule == "pseudo_labels"
                        assert version.pseudo_label_weight == 0.5 and version.self_training_strength > 0
                    # An unlabeled input is no neighbour of the model either: its own prediction does not
                    # count it, at similarity 1, as a vote.
                    own = loupe.predictions.predict("a", "m", [unlabeled[0].id]).predictions[0]
                    assert own.neighbours and all(n.input_id.endswith("-l") for n in own.neighbours)
                    app = loupe.apps.get("a")
                    xtr, _ = loupe.embedder.item_vectors(app, [item.id for item in labeled])
                    xte, _ = loupe.embedder.item_vectors(app, [data for data, _ in held_out])
                    probe = LogisticRegression(C=10, max_iter=3000).fit(xtr, CLASSES).predict(xte)
                    accuracy["probe"].append(float(np.mean(probe == np.asarray([cls for _, cls in held_out]))))
    gains = np.asarray(accuracy[True]) - np.asarray(accuracy[False])
    assert gains.mean() > 0 and gains.min() >= -0.011, accuracy  # at most one photo worse on a draw
    assert np.mean(accuracy[True]) > np.mean(accuracy["probe"]), accuracy


def test_self_training_strength_needs_a_clear_gain_except_at_two_labels_per_concept():
    """From 3 labels per concept a strength must beat none by 4 held-out points (6 from 8 labels); at 2
    (one held-out label per concept) the best strength is used unless it loses by 5 points."""
    from loupe.learning.semi_supervised import strength_from_scores

    assert strength_from_scores({0: 0.70, 2: 0.73, 4: 0.72, 8: 0.71}, shots=4) == 0  # +3: noise
    assert strength_from_scores({0: 0.70, 2: 0.74, 4: 0.75, 8: 0.75}, shots=4) == 4  # ties: the weaker
    assert strength_from_scores({0: 0.70, 2: 0.74, 4: 0.75, 8: 0.75}, shots=8) == 0  # +5 at 8: noise
    assert strength_from_scores({0: 0.70, 2: 0.74, 4: 0.76, 8: 0.75}, shots=16) == 4
    assert strength_from_scores({0: 0.70, 2: 0.66, 4: 0.67, 8: 0.60}, shots=2) == 4  # -3: within noise
    assert strength_from_scores({0: 0.70, 2: 0.60, 4: 0.64, 8: 0.62}, shots=2) == 0  # -6: it hurts


def test_huge_training_sets_are_sampled_per_concept():
    """A million-example train fits a bounded, stratified sample: rare concepts keep every example."""
    from loupe.learning.training_set import TrainingSet, bounded

    sizes = [5000, 3000, 40, 7]  # two big concepts, two rare ones
    groups = np.concatenate([np.full(n, c) for c, n in enumerate(sizes)])
    positive = np.eye(4, dtype=bool)[groups]
    ts = TrainingSet(np.arange(len(groups), dtype=np.int64) * 3, [f"i{i}" for i in range(len(groups))], positive,
                     ~positive, np.zeros_like(positive))
    small = bounded(ts, 1000, seed=1)
    counts = small.positive.sum(axis=0).tolist()
    assert counts[2:] == [40, 7] and counts[0] == counts[1] and sum(counts) <= 1000 and sum(counts) >= 990
    assert np.all(np.diff(small.seqs) > 0)  # still in sequence order
    assert [small.input_ids[i] for i in range(3)] == [f"i{s // 3}" for s in small.seqs[:3]]
    assert bounded(ts, 10_000) is ts


def test_label_matrices_match_a_plain_reading_of_the_labels():
    from loupe.learning.labeled import LabelEntry
    from loupe.learning.training_set import LabelRule

    entries = [LabelEntry("a", frozenset({"x", "other"}), frozenset()), LabelEntry("b", frozenset(), frozenset({"y"})),
               LabelEntry("c", frozenset(), frozenset())]
    closed = LabelRule(("x", "y"), closed_environment=True)
    pos, neg = closed.matrices(entries)
    assert pos.tolist() == [[True, False], [False, False], [False, False]]
    assert neg.tolist() == [[False, True], [False, True], [False, False]]
    assert [closed.relevant(e) for e in entries] == [True, True, False]
    _, neg_open = LabelRule(("x", "y"), closed_environment=False).matrices(entries)
    assert neg_open.tolist() == [[False, True], [True, True], [True, True]]
    # Three kinds: labeled for the model, labeled only with other concepts, no label at all.
    other = LabelEntry("d", frozenset({"other"}), frozenset())
    kinds = [*entries, other]
    opened = LabelRule(("x", "y"), closed_environment=False)
    assert [opened.relevant(e) for e in kinds] == [True, True, False, True]  # no label: not an example
    assert [opened.unlabeled(e) for e in kinds] == [False, False, True, False]
    assert [closed.unlabeled(e) for e in kinds] == [False, False, True, True]  # closed: other labels too
    background = LabelRule(("x", "y"), closed_environment=False, unlabeled_negatives=True)
    assert all(background.relevant(e) for e in kinds)


def test_multi_label_self_training_takes_each_concepts_confident_members():
    """One-vs-rest pseudo-labels: per concept, its most confident pool members as positives and the most
    confidently "no" as negatives; every other (input, concept) pair stays unknown."""
    from loupe.learning.heads import Head
    from loupe.learning.semi_supervised import pseudo_labels_ovr

    head = Head(np.asarray([[4.0, 0.0], [0.0, 4.0]], np.float32), np.zeros(2, np.float32), False)
    pool = np.asarray([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [-1, 0], [0, -1]], np.float32)
    rows, pos, neg = pseudo_labels_ovr(head, 1.0, pool, np.asarray([1, 1]), strength=1)
    by_row = {int(r): (p.tolist(), n.tolist()) for r, p, n in zip(rows, pos, neg)}
    assert by_row[0][0] == [True, False] and by_row[2][0] == [False, True]  # the most confident yes
    assert by_row[4][1] == [True, False] and by_row[5][1] == [False, True]  # the most confident no
    assert 1 not in by_row and 3 not in by_row  # less confident: left out
    assert pos.sum() == 2 and neg.sum() == 2


def test_multi_label_models_learn_from_unlabeled_inputs_only_when_validation_says_so(tmp_path, shared_backbones):
    """A closed-environment multi-label model sees the app's unlabeled inputs, records how many, and uses
    them only if cross-validation gains 2 points of mean average precision; answers stay per-concept."""
    classes = ["shoes", "hat", "dress", "pants"]
    held_out = [(p.read_bytes(), cls) for cls in classes for p in dataset_images(CLOTHING / "test" / cls, 10)]
    accuracy = {}
    for semi in (False, True):
        with Loupe(Config(data_dir=tmp_path / f"d{semi}", auto_retrain=False, semi_supervised=semi),
                   backbones=shared_backbones) as loupe:
            loupe.apps.create("a")
            items = []
            for cls in classes:
                files = dataset_images(CLOTHING / "train" / cls, 20)
                items += [NewInput(image=p.read_bytes(), id=f"{cls}-{i}", concepts=[cls] if i < 3 else [])
                          for i, p in enumerate(files)]
            loupe.inputs.add("a", items)
            loupe.models.create("a", "m", concept_ids=classes, mutually_exclusive=False, closed_environment=True)
            version = loupe.trainer.train("a", "m")
            assert version.status == "trained" and version.unlabeled_seen == (68 if semi else 0)
            if version.pseudo_labels:
                assert version.self_training_strength in (2, 4, 8) and version.pseudo_label_weight == 0.5
            answers = loupe.predictions.predict("a", "m", [data for data, _ in held_out]).predictions
            assert all(len(a.concepts) == 4 for a in answers)
            accuracy[semi] = float(np.mean([a.concepts[0].concept_id == cls for a, (_, cls) in zip(answers, held_out)]))
    assert accuracy[True] >= accuracy[False] - 0.026, accuracy  # never worse by more than a photo


def test_open_multi_label_model_chooses_what_unlabeled_inputs_are(tmp_path, shared_backbones):
    """The default multi-label model (open environment): a concept with no labeled negative has only the
    app's unlabeled inputs to learn "no" from, so they are its negatives (and vote as such); with two
    labeled concepts the train chooses by validation, and the version says what it chose and why."""
    with Loupe(Config(data_dir=tmp_path / "d", auto_retrain=False), backbones=shared_backbones) as loupe:
        loupe.apps.create("a")
        items = []
        for cls in ("hat", "shoes", "dress", "pants"):  # hats are rare: 4 labeled, 2 unlabeled
            files = dataset_images(CLOTHING / "train" / cls, 6 if cls == "hat" else 20)
            items += [NewInput(image=p.read_bytes(), id=f"{cls}-{i}", concepts=[cls] if cls == "hat" and i < 4 else [])
                      for i, p in enumerate(files)]
        loupe.inputs.add("a", items)
        loupe.models.create("a", "defect", concept_ids=["hat"])
        version = loupe.trainer.train("a", "defect")
        assert version.unlabeled_rule == "negatives" and "only negatives of hat" in version.unlabeled_reason
        assert version.negatives == {"hat": 62} and version.unlabeled_seen == 62
        # New photos (a stored unlabeled hat is itself a negative now, and its own nearest "no").
        photos = [dataset_images(CLOTHING / "test" / cls, 1)[0].read_bytes() for cls in ("hat", "shoes", "dress")]
        answers = loupe.predictions.predict("a", "defect", photos).predictions
        hat, others = answers[0].concepts[0].value, [a.concepts[0].value for a in answers[1:]]
        assert hat > max(others) and max(others) < 0.5, (hat, others)
        assert any(n.input_id.startswith(("shoes", "dress", "pants")) for a in answers for n in a.neighbours)
        loupe.inputs.edit("a", "merge", [InputEdit(input_id=f"shoes-{i}", concepts=["shoes"]) for i in range(4)])
        loupe.models.create("a", "two", concept_ids=["hat", "shoes"])
        two = loupe.trainer.train("a", "two")
        assert two.unlabeled_rule in ("negatives", "ignored", "pseudo_labels")
        assert "the labeled examples" in two.unlabeled_reason and two.unlabeled_seen == 58, two.unlabeled_reason
        assert two.negatives["hat"] == 4 + (58 if two.unlabeled_rule == "negatives" else 0)


def test_copies_of_a_photo_are_held_out_together(tmp_path, shared_backbones):
    """Every photo uploaded twice (same bytes) and once more re-saved (JPEG quality 90: similarity
    0.99-0.995 here): cross-validation keeps each photo's copies in one fold, so a model is never scored
    on a photo it was trained on. (A copy resized to 90 % at quality 70 scores 0.89-0.96, below the
    0.98 that counts as the same photo.)"""
    with Loupe(Config(data_dir=tmp_path / "d", auto_retrain=False), backbones=shared_backbones) as loupe:
        loupe.apps.create("a")
        items = []
        for cls in ("hat", "shoes", "dress"):
            for i, p in enumerate(dataset_images(CLOTHING / "train" / cls, 8)):
                data = p.read_bytes()
                items += [NewInput(image=data, id=f"{cls}-{i}", concepts=[cls]),
                          NewInput(image=data, id=f"{cls}-{i}-again", concepts=[cls]),
                          NewInput(image=resaved(data), id=f"{cls}-{i}-small", concepts=[cls])]
        loupe.inputs.add("a", items)
        loupe.models.create("a", "m", concept_ids=["hat", "shoes", "dress"], mutually_exclusive=True)
        version = loupe.trainer.train("a", "m")
        evaluated = loupe.quality.evaluate("a", "m", version.id)
        assert evaluated.evaluation is not None and evaluated.evaluation.status == "evaluated"
        fold = {h.input_id: h.fold for h in evaluated.evaluation.predictions}
        assert len(fold) == 72 and len(set(fold.values())) == 5
        for cls in ("hat", "shoes", "dress"):
            for i in range(8):
                assert fold[f"{cls}-{i}"] == fold[f"{cls}-{i}-again"] == fold[f"{cls}-{i}-small"]
