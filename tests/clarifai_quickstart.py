"""Clarifai's custom-training quick start, run by the official clarifai==2.6.2 client, unmodified.

Run by tests/test_clarifai_client.py in a virtual environment of its own (the client needs
protobuf 3.x). Arguments: base URL, API key, then image files: SHOES... -- HATS... -- QUERY.
Prints one "ok <step>" line per step; any failure raises (non-zero exit).
"""

import base64
import sys
import time

from clarifai.rest import ClarifaiApp
from clarifai.rest import Image as ClImage


def step(name):
    print("ok", name, flush=True)


def main():
    base_url, key = sys.argv[1], sys.argv[2]
    rest = sys.argv[3:]
    shoes = rest[:rest.index("--")]
    rest = rest[rest.index("--") + 1:]
    hats = rest[:rest.index("--")]
    query = rest[rest.index("--") + 1]

    app = ClarifaiApp(api_key=key, base_url=base_url)  # lists models on construction
    step("construct")

    for i, path in enumerate(shoes[:3]):
        app.inputs.create_image_from_filename(path, image_id="qs-shoes-%d" % i, concepts=["shoes"],
                                              not_concepts=["hat"], metadata={"run": "qs", "class": "shoes", "idx": i})
    with open(shoes[3], "rb") as f:
        app.inputs.create_image_from_bytes(f.read(), image_id="qs-shoes-3", concepts=["shoes"],
                                           metadata={"run": "qs", "class": "shoes", "idx": 3})
    with open(shoes[4], "rb") as f:
        app.inputs.create_image_from_base64(base64.b64encode(f.read()), image_id="qs-shoes-4", concepts=["shoes"],
                                            metadata={"run": "qs", "class": "shoes", "idx": 4})
    images = [ClImage(filename=p, image_id="qs-hat-%d" % i, concepts=["hat"], not_concepts=["shoes"],
                      metadata={"run": "qs", "class": "hat", "idx": i}) for i, p in enumerate(hats)]
    app.inputs.bulk_create_images(images)
    step("add inputs")

    while app.inputs.check_status().to_process > 0:
        time.sleep(0.2)
    counts = app.inputs.check_status()
    assert counts.processed == 5 + len(hats), counts.processed
    step("check status")

    listed = list(app.inputs.get_all())
    assert len(listed) == 5 + len(hats), len(listed)
    page = app.inputs.get_by_page(page=1, per_page=3)
    assert len(page) == 3
    got = app.inputs.get("qs-shoes-0")
    assert got.concepts == ["shoes"] and got.not_concepts == ["hat"], (got.concepts, got.not_concepts)
    assert got.metadata["class"] == "shoes"
    step("list and get inputs")

    app.inputs.merge_concepts("qs-shoes-1", concepts=["footwear"])
    assert sorted(app.inputs.get("qs-shoes-1").concepts) == ["footwear", "shoes"]
    app.inputs.delete_concepts("qs-shoes-1", concepts=["footwear"])
    assert app.inputs.get("qs-shoes-1").concepts == ["shoes"]
    app.inputs.merge_metadata("qs-shoes-1", {"colour": "black"})
    assert app.inputs.get("qs-shoes-1").metadata["colour"] == "black"
    step("edit concepts and metadata")

    concept_ids = sorted(c.concept_id for c in app.concepts.get_all())
    assert {"shoes", "hat"} <= set(concept_ids), concept_ids
    assert app.concepts.get("hat").concept_name == "hat"
    step("concepts")

    model = app.models.create("qs-model", concepts=["shoes", "hat"], concepts_mutually_exclusive=True,
                              closed_environment=True)
    model = model.train(sync=True, timeout=120)
    status = model.get_info()["model"]["model_version"]["status"]["code"]
    assert status == 21100, status
    step("train")

    for result in (model.predict_by_filename(query),
                   model.predict_by_bytes(open(query, "rb").read()),
                   model.predict_by_base64(base64.b64encode(open(query, "rb").read()))):
        concepts = result["outputs"][0]["data"]["concepts"]
        assert concepts[0]["id"] == "hat", concepts
        assert abs(sum(c["value"] for c in concepts) - 1.0) < 0.1
    again = app.models.get("qs-model")
    assert again.predict_by_filename(query)["outputs"][0]["data"]["concepts"][0]["id"] == "hat"
    step("predict")

    general = app.public_models.general_model.predict_by_filename(query)["outputs"][0]
    concepts = general["data"]["concepts"]
    assert general["model"]["id"] == "aaa03c23b3724a16a56b629203edc62c" and len(concepts) == 20, general
    assert all(c["id"].startswith("n0") and c["name"] for c in concepts), concepts[:3]
    assert abs(sum(c["value"] for c in concepts) - 1) < 0.5 and concepts[0]["value"] >= concepts[-1]["value"]
    print("general model:", [(c["name"], round(c["value"], 3)) for c in concepts[:3]])
    step("general model (ImageNet, offline)")

    similar = app.inputs.search_by_image(filename=hats[0])
    assert similar[0].input_id == "qs-hat-0" and similar[0].score > 0.99, (similar[0].input_id, similar[0].score)
    by_id = app.inputs.search_by_image(image_id="qs-shoes-2")
    assert by_id[0].input_id == "qs-shoes-2"
    annotated = app.inputs.search_by_annotated_concepts(concept="hat")
    assert {i.input_id for i in annotated} == {"qs-hat-%d" % i for i in range(len(hats))}
    negative = app.inputs.search_by_annotated_concepts(concept="hat", value=False)
    assert {i.input_id for i in negative} == {"qs-shoes-0", "qs-shoes-1", "qs-shoes-2"}
    by_meta = app.inputs.search_by_metadata({"run": "qs", "class": "shoes"})
    assert {i.input_id for i in by_meta} == {"qs-shoes-%d" % i for i in range(5)}
    predicted = app.inputs.search_by_predicted_concepts(concept="shoes")
    assert {i.input_id for i in predicted} >= {"qs-shoes-%d" % i for i in range(5)}
    step("search")

    versions = model.list_versions()["model_versions"]
    assert len(versions) == 2 and versions[-1]["status"]["code"] == 21102, versions
    step("list versions")

    app.inputs.delete("qs-shoes-4")
    assert len(list(app.inputs.get_all())) == 4 + len(hats)
    app.models.delete("qs-model")
    try:
        app.models.get("qs-model")
        raise AssertionError("deleted model still found")
    except Exception as exc:  # the client raises on the 404 (and falls back to a search)
        if isinstance(exc, AssertionError):
            raise
    step("delete")
    print("QUICKSTART PASSED")


if __name__ == "__main__":
    main()
