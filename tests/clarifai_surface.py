"""The rest of the official clarifai==2.6.2 client's surface that is not Clarifai-hosted by nature: geo,
video, workflows, input clauses by id and URL, crop, regions, Clarifai's model names, the embedding
model, concept-search paging, hyper_params, ties across pages. Run by tests/test_clarifai_client.py in
the client's own virtual environment. Arguments: base URL, API key, VIDEO, then photos SHOES... -- HATS...
Prints one "ok <case>" line per case; any failure raises.
"""

import json
import sys
import urllib.request

from clarifai.rest import (
    BoundingBox,
    ClarifaiApp,
    Concept,
    Geo,
    GeoBox,
    GeoLimit,
    GeoPoint,
    InputSearchTerm,
    OutputSearchTerm,
    Region,
    RegionInfo,
    SearchQueryBuilder,
)
from clarifai.rest import Image as ClImage


def step(name):
    print("ok", name, flush=True)


def raw(base, key, method, path, body=None):
    request = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": "Key " + key, "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read())


def main():
    base, key, video = sys.argv[1], sys.argv[2], sys.argv[3]
    rest = sys.argv[4:]
    shoes, hats = rest[:rest.index("--")], rest[rest.index("--") + 1:]
    app = ClarifaiApp(api_key=key, base_url=base)

    # Geo: stored, echoed, searched by radius (default 10 miles, kilometres, degrees) and by box.
    places = {"sf": (-122.4194, 37.7749), "oakland": (-122.2712, 37.8044), "la": (-118.2437, 34.0522)}
    for i, (name, (lon, lat)) in enumerate(places.items()):
        app.inputs.create_image_from_filename(shoes[i], image_id="geo-" + name, concepts=["shoes"],
                                              geo=Geo(geo_point=GeoPoint(lon, lat)))
    got = app.inputs.get("geo-sf")
    assert (got.geo.geo_point.longitude, got.geo.geo_point.latitude) == places["sf"], got.geo.geo_point.__dict__
    # Oakland is 8.3 miles from San Francisco as the crow flies: inside the default 10, outside 5.
    near = {i.input_id for i in app.inputs.search_by_geo(GeoPoint(-122.4194, 37.7749))}
    assert near == {"geo-sf", "geo-oakland"}, near
    within = {i.input_id for i in app.inputs.search_by_geo(GeoPoint(-122.4194, 37.7749), GeoLimit("mile", 5))}
    assert within == {"geo-sf"}, within
    far = {i.input_id for i in app.inputs.search_by_geo(GeoPoint(-122.4194, 37.7749), GeoLimit("kilometer", 600))}
    assert far == {"geo-sf", "geo-oakland", "geo-la"}, far
    degrees = {i.input_id for i in app.inputs.search_by_geo(GeoPoint(-118.2, 34.0), GeoLimit("degree", 1))}
    assert degrees == {"geo-la"}, degrees
    boxed = {i.input_id for i in app.inputs.search_by_geo(geo_box=GeoBox(GeoPoint(-123, 37), GeoPoint(-122, 38)))}
    assert boxed == {"geo-sf", "geo-oakland"}, boxed
    qb = SearchQueryBuilder()
    qb.add_term(OutputSearchTerm(input_id="geo-sf"))
    qb.add_term(InputSearchTerm(geo=Geo(geo_point=GeoPoint(-122.4194, 37.7749), geo_limit=GeoLimit("mile", 20))))
    combined = [i.input_id for i in app.inputs.search(qb)]
    assert combined[0] == "geo-sf" and set(combined) == {"geo-sf", "geo-oakland"}, combined
    step("geo")

    # Regions: stored on add, echoed, merged by PATCH.
    box = BoundingBox(0.1, 0.2, 0.6, 0.7)
    app.inputs.create_image(ClImage(filename=hats[0], image_id="regions", concepts=["hat"],
                                    regions=[Region(RegionInfo(bbox=box), [Concept("hat")], region_id="r1")]))
    stored = raw(base, key, "GET", "/v2/inputs/regions")["input"]["data"]["regions"]
    assert stored[0]["id"] == "r1" and stored[0]["region_info"]["bounding_box"]["left_col"] == 0.2, stored
    assert stored[0]["data"]["concepts"][0]["id"] == "hat", stored
    app.inputs.update(ClImage(image_id="regions", regions=[
        Region(RegionInfo(bbox=BoundingBox(0.0, 0.0, 0.5, 0.5)), [Concept("hat")], region_id="r2")]))
    regions = app.inputs.get("regions").regions
    assert [r.region_id for r in regions] == ["r1", "r2"], [r.region_id for r in regions]
    step("regions")

    # Crop: echoed on add; a stored input queried with a crop is looked for by that part of it.
    app.inputs.create_image_from_filename(hats[1], image_id="cropped", crop=[0.1, 0.1, 0.9, 0.9])
    assert app.inputs.get("cropped").crop == [0.1, 0.1, 0.9, 0.9]
    whole = app.inputs.search_by_image(image_id="geo-sf")
    part = app.inputs.search_by_image(image_id="geo-sf", crop=[0.0, 0.0, 0.4, 0.4])
    assert whole[0].input_id == "geo-sf" and whole[0].score > 0.999
    assert part[0].score < 0.999, (part[0].input_id, part[0].score)
    step("crop")

    # Input clauses by id and by original URL (an input added by URL keeps it).
    by_id = app.inputs.search(qb_of(InputSearchTerm(input_id="geo-la")))
    assert [i.input_id for i in by_id] == ["geo-la"], [i.input_id for i in by_id]
    # The server was started with --url-allow-hosts 127.0.0.1, so it may fetch from this local server.
    photo_url = serve_folder(shoes[0]) + "/" + shoes[0].rsplit("/", 1)[1]
    app.inputs.create_image_from_url(photo_url, image_id="by-url")
    assert [i.input_id for i in app.inputs.search_by_original_url(photo_url)] == ["by-url"]
    assert app.inputs.search_by_original_url(photo_url + "?other") == []
    step("input clauses by id and URL")

    # Ties across pages: two copies of one photo tie; each comes exactly once over the pages.
    app.inputs.create_image_from_filename(hats[2], image_id="twin-a")
    app.inputs.create_image_from_filename(hats[2], image_id="twin-b")
    seen = []
    for page in range(1, 8):
        seen += [i.input_id for i in app.inputs.search_by_image(filename=hats[2], page=page, per_page=1)]
    assert seen[:2] == ["twin-a", "twin-b"] and len(seen) == len(set(seen)), seen
    step("ties across pages")

    # Clarifai's names for the built-in models, the public listing, the embedding model.
    general = app.models.get("general-v1.3")
    assert general.model_id == "aaa03c23b3724a16a56b629203edc62c", general.model_id
    public = list(app.models.get_all(public_only=True))
    assert {(m.model_id, m.output_info["type"]) for m in public} == {
        ("aaa03c23b3724a16a56b629203edc62c", "concept"), ("bbb5f41425b8468d9b7a554ff10f8581", "embed")}
    tags = app.api.predict_concepts([ClImage(filename=hats[0])])
    assert tags["outputs"][0]["data"]["concepts"][0]["id"].startswith("n0"), tags["outputs"][0]["data"]
    tagged = app.tag_files([hats[0]])
    assert len(tagged["outputs"][0]["data"]["concepts"]) == 20
    embedded = app.api.predict_embed([ClImage(filename=hats[0])])
    vector = embedded["outputs"][0]["data"]["embeddings"][0]
    assert vector["num_dimensions"] == len(vector["vector"]) == 1280, vector["num_dimensions"]
    again = app.public_models.general_embedding_model.predict_by_filename(hats[0])
    assert again["outputs"][0]["data"]["embeddings"][0]["num_dimensions"] == 1280
    step("model names and the embedding model")

    # A custom model with hyper_params (stored, echoed), trained, then video and workflows through it.
    for i, path in enumerate(hats[3:]):
        app.inputs.create_image_from_filename(path, image_id="hat-%d" % i, concepts=["hat"], not_concepts=["shoes"])
    for i, path in enumerate(shoes[3:]):
        app.inputs.create_image_from_filename(path, image_id="shoe-%d" % i, concepts=["shoes"], not_concepts=["hat"])
    model = app.models.create("wear", concepts=["shoes", "hat"], concepts_mutually_exclusive=True,
                              hyper_parameters={"learning_rate": 0.1})
    model = model.train(sync=True, timeout=120)
    info = model.get_info(verbose=True)["model"]["output_info"]
    assert info["output_config"]["hyper_params"] == {"learning_rate": 0.1} and "message" not in info, info
    listed = [m for m in app.models.get_all() if m.model_id == "wear"][0]
    assert listed.hyper_parameters == {"learning_rate": 0.1}
    step("hyper_params")

    clip = model.predict_by_filename(video, is_video=True)
    frames = clip["outputs"][0]["data"]["frames"]
    assert [f["frame_info"]["time"] for f in frames] == [0, 1000, 2000, 3000], [f["frame_info"] for f in frames]
    assert [f["data"]["concepts"][0]["id"] for f in frames] == ["hat", "hat", "shoes", "shoes"], frames
    fast = model.predict_by_filename(video, is_video=True, sample_ms=500)
    assert len(fast["outputs"][0]["data"]["frames"]) == 8
    general_video = app.public_models.general_model.predict_by_filename(video, is_video=True, max_concepts=3)
    assert all(len(f["data"]["concepts"]) == 3 for f in general_video["outputs"][0]["data"]["frames"])
    step("video")

    # Workflows: created over the API (the client only lists, gets and runs them), node ids kept.
    raw(base, key, "POST", "/v2/workflows", {"workflows": [{"id": "wf", "nodes": [
        {"id": "wear-node", "model": {"id": "wear"}},
        {"id": "general-node", "model": {"id": "aaa03c23b3724a16a56b629203edc62c"}}]}]})
    flows = list(app.workflows.get_all())
    assert [w.wf_id for w in flows] == ["wf"] and [n.node_id for n in flows[0].nodes] == ["wear-node", "general-node"]
    assert flows[0].nodes[0].model_version_id == model.model_version, flows[0].nodes[0].model_version_id
    assert [w.wf_id for w in app.workflows.get_all(public_only=True)] == ["General"]
    assert app.workflows.get("wf").nodes[1].model_id == "aaa03c23b3724a16a56b629203edc62c"
    result = app.workflows.get("wf").predict_by_filename(hats[0], max_concepts=1, min_value=0.01)
    outputs = result["results"][0]["outputs"]
    assert [len(o["data"]["concepts"]) for o in outputs] == [1, 1], outputs
    only_hat = app.workflows.get("wf").predict_by_filename(hats[0], select_concepts=[Concept(concept_id="hat")])
    assert [c["id"] for c in only_hat["results"][0]["outputs"][0]["data"]["concepts"]] == ["hat"]
    frames = app.workflows.get("wf").predict_by_filename(video, is_video=True)["results"][0]["outputs"][0]
    assert len(frames["data"]["frames"]) == 4
    raw(base, key, "DELETE", "/v2/workflows/wf")
    assert list(app.workflows.get_all()) == []
    step("workflows")

    # Concept search pages until an empty page (the client's generator ends).
    found = list(app.concepts.search("*"))
    assert {c.concept_id for c in found} == {"shoes", "hat"}, [c.concept_id for c in found]
    step("concept search paging")

    # What Clarifai's 2017 Java and iOS clients need of a predict output.
    answer = model.predict_by_filename(hats[0])["outputs"][0]
    assert set(answer["data"]) == {"concepts"}, answer["data"].keys()
    assert "data" not in answer["model"]["output_info"] and answer["model"]["output_info"]["message"]
    assert answer["input"]["data"]["image"]["url"].startswith(base), answer["input"]
    step("java and ios shapes")
    print("SURFACE PASSED")


def serve_folder(path):
    """A plain HTTP server on 127.0.0.1 for the folder of `path`, in a thread; its base URL."""
    import functools
    import http.server
    import os
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=os.path.dirname(path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return "http://127.0.0.1:%d" % server.server_address[1]


def qb_of(term):
    qb = SearchQueryBuilder()
    qb.add_term(term)
    return qb


if __name__ == "__main__":
    main()
