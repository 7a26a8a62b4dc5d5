"""Structure the code-health issues asked for: bulk deletes all or nothing, errors mapped by type,
backbones run by sessions and loaded under their own locks, imports pointing down the layers with no
circle, no god module."""

from __future__ import annotations

import ast
import threading
import time
from pathlib import Path

import pytest
from conftest import CLOTHING, REPO, dataset_images
from litestar.testing import TestClient

from loupe.backbones import registry
from loupe.backbones.registry import BackboneCache
from loupe.backbones.runtimes import Session
from loupe.config import Config
from loupe.errors import (
    Busy,
    Conflict,
    ImageError,
    InvalidArgument,
    ModelNotTrained,
    NotFound,
    StorageFull,
    TrainFailure,
    TrainingFailed,
    UrlFetchError,
)
from loupe.intake.inputs import NewInput
from loupe.service.app import create_app
from loupe.service.errors import to_api_error


@pytest.fixture
def app_with_models(loupe):
    loupe.apps.create("a")
    loupe.inputs.add("a", [NewInput(image=p.read_bytes(), id=f"i{n}")
                           for n, p in enumerate(dataset_images(CLOTHING / "train" / "hat", 3))])
    for model_id in ("m1", "m2", "m3"):
        loupe.models.create("a", model_id, concept_ids=["hat"])
    return loupe


def test_bulk_model_delete_is_all_or_nothing(app_with_models):
    loupe = app_with_models
    with pytest.raises(NotFound):
        loupe.models.delete_many("a", ["m1", "m2", "nope"])
    assert {m.id for m in loupe.models.list_models("a")} == {"m1", "m2", "m3"}
    assert loupe.models.delete_many("a", ["m1", "m2", "m1"]) == 2
    assert [m.id for m in loupe.models.list_models("a")] == ["m3"]


def test_bulk_delete_over_http_is_all_or_nothing(app_with_models):
    loupe = app_with_models
    headers = {"Authorization": f"Key {loupe.keys.create('a')}"}
    with TestClient(create_app(loupe)) as client:
        r = client.request("DELETE", "/v2/models", headers=headers, json={"ids": ["m1", "nope"]})
        assert r.status_code == 404
        assert len([m for m in client.get("/v2/models", headers=headers).json()["models"] if m["app_id"] == "a"]) == 3
        r = client.request("DELETE", "/v2/inputs", headers=headers, json={"ids": ["i0", "i1", "nope"]})
        assert r.status_code == 404
        assert loupe.inputs.count("a") == 3
        r = client.request("DELETE", "/v2/inputs", headers=headers, json={"ids": ["i0", "i1"]})
        assert r.status_code == 200 and loupe.inputs.count("a") == 1


def test_a_bulk_delete_racing_another_delete_deletes_all_or_none(app_with_models):
    """Two overlapping bulk deletes at once: each either deletes all its ids or none of them."""
    loupe = app_with_models
    outcomes = []

    def delete(ids):
        try:
            outcomes.append(loupe.models.delete_many("a", ids))
        except NotFound:
            outcomes.append(0)

    threads = [threading.Thread(target=delete, args=(ids,)) for ids in (["m1", "m2"], ["m2", "m3"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    left = {m.id for m in loupe.models.list_models("a")}
    assert sorted(outcomes) == [0, 2] and left in ({"m3"}, {"m1"})


def test_errors_map_by_type_not_by_message():
    cases = {NotFound("model", "x"): (404, 21200), NotFound("input", "x"): (404, 30102),
             NotFound("concept", "x"): (404, 21202), NotFound("version", "v"): (404, 21200),
             ModelNotTrained("whatever words"): (400, 21102), ImageError("x"): (400, 30002),
             UrlFetchError("x"): (400, 30002), Conflict("x"): (409, 11102), Busy("x"): (429, 11006),
             StorageFull("x"): (507, 11102), TrainingFailed(TrainFailure.NO_DATA, "x"): (400, 11102)}
    for error, expected in cases.items():
        api = to_api_error(error)
        assert (api.http_status, api.code) == expected, error
    assert to_api_error(Busy("x", retry_after=7)).headers == {"Retry-After": "7"}
    assert NotFound("input", "abc").resource == "input" and TrainingFailed(TrainFailure.NO_DATA, "m").failure == "no_data"


def test_backbones_are_run_by_a_session(shared_backbones):
    backbone = shared_backbones.get("effnet-lite2")
    assert isinstance(backbone.session, Session)
    assert backbone.session.runtime == "openvino" and backbone.session.precision in ("fp32", "bf16")
    assert backbone.embedder == f"openvino/{backbone.session.precision}"


def test_a_slow_backbone_load_does_not_stall_a_loaded_one(monkeypatch, tmp_path, shared_backbones):
    cache = BackboneCache(Config(data_dir=tmp_path))
    cache._loaded["effnet-lite2"] = shared_backbones.get("effnet-lite2")
    release = threading.Event()

    def slow_load(backbone_id, config):
        release.wait(10)
        return object()

    monkeypatch.setattr(registry, "load_backbone", slow_load)
    loader = threading.Thread(target=cache.get, args=("clip-vit-b-32",))
    loader.start()
    time.sleep(0.1)
    started = time.monotonic()
    assert cache.get("effnet-lite2") is not None
    assert time.monotonic() - started < 0.5  # not behind the CLIP load
    release.set()
    loader.join()
    assert set(cache.loaded_ids()) == {"effnet-lite2", "clip-vit-b-32"}


def test_idle_backbones_are_unloaded_but_not_the_default(tmp_path, monkeypatch):
    cache = BackboneCache(Config(data_dir=tmp_path, backbone_idle_seconds=60))
    monkeypatch.setattr(registry, "load_backbone", lambda backbone_id, config: object())
    cache.get("effnet-lite2")
    cache.get("effnet-lite0")
    assert cache.unload_idle(time.monotonic() + 30) == []
    assert cache.unload_idle(time.monotonic() + 120) == ["effnet-lite0"]
    assert cache.loaded_ids() == ["effnet-lite2"]


# The layers, lowest first: a module may import its own package or any lower layer, never a higher one
# (docs/architecture.md draws them). Learning's values sit below the store, which persists them.
LAYERS = [
    {"loupe.config", "loupe.errors", "loupe.ids", "loupe.pagination", "loupe.allocator"},
    {"loupe.indexes", "loupe.backbones"},
    {"loupe.learning"},
    {"loupe.store"},
    {"loupe.apps", "loupe.accounts"},
    {"loupe.intake"},
    {"loupe.models"},
    {"loupe.search"},
    {"loupe.application"},
    {"loupe.demo", "loupe.scale"},
    {"loupe.cli", "loupe.service"},
]
# What the HTTP layer may use of the store: value types and checks, not the store itself.
SERVICE_MAY_USE_OF_STORE = {"loupe.store.records", "loupe.store.geo", "loupe.store.filters"}
CORE_MODULE_MAX_LINES = 420


def _modules() -> dict[str, Path]:
    roots = {"loupe": REPO / "src" / "loupe", "loupe.indexes": REPO / "indexes", "loupe.service": REPO / "service"}
    found = {}
    for prefix, root in roots.items():
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((prefix, *parts))] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every loupe module this one imports, at any depth of its code (`from a import b` counts b when b
    is a module). Loupe imports absolutely; a relative import fails here rather than going unseen."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{name}: relative import"
            base = node.module or ""
            out |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
    return {m for m in out if m in known and m != name}


def _package(module: str) -> tuple[int, str]:
    """The layer and the package of a module."""
    for rank, packages in enumerate(LAYERS):
        for p in packages:
            if module == p or module.startswith(p + "."):
                return rank, p
    raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS")


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps
                  if _package(a)[1] != _package(b)[1] and _package(b)[0] > _package(a)[0])


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import one another, directly or not (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return circles


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def test_imports_point_down_and_form_no_circle():
    graph = _graph()
    assert "loupe.apps.context" in graph["loupe.intake.inputs"]  # the graph sees imports at all
    upward = _upward(graph)
    assert not upward, "imports pointing up: " + "; ".join(upward)
    into_store = [f"{a} -> {b}" for a, deps in graph.items() if a.startswith("loupe.service") for b in deps
                  if b.startswith("loupe.store") and b not in SERVICE_MAY_USE_OF_STORE]
    assert not into_store, "the service reaches into the store: " + "; ".join(sorted(into_store))
    circles = _circles(graph)
    assert not circles, f"import circles: {circles}"


def test_the_guard_sees_an_upward_import_and_a_circle():
    """The checks above are not vacuous: an upward edge, and the circle it closes, are caught."""
    graph = _graph()
    graph["loupe.learning.heads"] = graph["loupe.learning.heads"] | {"loupe.models.trainer"}
    assert "loupe.learning.heads -> loupe.models.trainer" in _upward(graph)
    assert any({"loupe.learning.heads", "loupe.models.trainer"} <= set(c) for c in _circles(graph))
    assert _circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]


def test_no_core_module_is_a_god_object():
    long = {name: n for name, path in _modules().items()
            if not name.startswith(("loupe.service", "loupe.cli"))
            and (n := len(path.read_text().splitlines())) > CORE_MODULE_MAX_LINES}
    assert not long, f"core modules over {CORE_MODULE_MAX_LINES} lines: {long}"


def test_every_config_field_loads_from_the_environment_by_its_name():
    import msgspec

    from loupe.config import config_from_env, env_name

    env = {"LOUPE_IMAGES_MAX_BYTES": "1000", "LOUPE_AUTO_RETRAIN": "false", "LOUPE_URL_ALLOW_HOSTS": "A.example, b",
           "LOUPE_RETRAIN_DELAY_SECONDS": "0.5", "LOUPE_WEIGHTS": '{"effnet-lite2": "/w.pt"}',
           "LOUPE_CLIP_WEIGHTS": "/clip.pt", "LOUPE_DATA_DIR": "/tmp/d", "LOUPE_VIDEOS_MAX_FRAMES": "7"}
    config = config_from_env(env)
    assert config.images.max_bytes == 1000 and config.images.max_pixels == Config().images.max_pixels
    assert config.auto_retrain is False and config.url_allow_hosts == ("a.example", "b")
    assert config.retrain_delay_seconds == 0.5 and config.videos.max_frames == 7
    assert config.weights == {"effnet-lite2": "/w.pt", "clip-vit-b-32": "/clip.pt"} and str(config.data_dir) == "/tmp/d"
    # Every field, not a hand-written list: each one's variable changes it.
    for field in msgspec.structs.fields(Config):
        value = getattr(Config(), field.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            assert getattr(config_from_env({env_name(field.name): str(value + 1)}), field.name) == value + 1, field.name
        elif isinstance(value, str):
            assert getattr(config_from_env({env_name(field.name): "x"}), field.name) == "x", field.name
    with pytest.raises(InvalidArgument, match="LOUPE_EMBED_BATCH_SIZE='many' is not a valid int"):
        config_from_env({"LOUPE_EMBED_BATCH_SIZE": "many"})
