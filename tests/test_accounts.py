"""Users, roles, sessions, personal access tokens and the audit trail, over real HTTP on 127.0.0.1.

The role test walks the server's own route table: every route must appear in ROUTE_PERMISSIONS (so a new
route cannot ship without someone deciding who may call it), and every role is tried on every route.
"""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest
from conftest import CLOTHING, dataset_images
from real_server import InProcessServer

from loupe.application import Loupe
from loupe.config import AccountLimits, Config
from loupe.intake.inputs import NewInput
from loupe.service.app import create_app
from loupe.store.records import Role

PASSWORD = "correct horse 1"
# Who is who in app "a": a server admin, one member per role, and a user of another app only.
MEMBERS = {"olive": Role.OWNER, "adam": Role.ADMIN, "lara": Role.LABELER, "vic": Role.VIEWER}
ALLOWED = {"read": {"owner", "admin", "labeler", "viewer"}, "label": {"owner", "admin", "labeler"},
           "manage": {"owner", "admin"}, "own": {"owner"}}

# Every API route and the permission it needs (app routes: read/label/manage/own; Loupe's account
# routes: account = any signed-in user, server = a server admin). Paths as the /v2 router serves them.
ROUTE_PERMISSIONS = {
    ("GET", "/v2/concepts"): "read", ("GET", "/v2/concepts/{concept_id}"): "read",
    ("POST", "/v2/concepts"): "label", ("PATCH", "/v2/concepts"): "label", ("POST", "/v2/concepts/searches"): "read",
    ("POST", "/v2/inputs"): "label", ("GET", "/v2/inputs"): "read", ("GET", "/v2/inputs/status"): "read",
    ("GET", "/v2/inputs/{input_id}"): "read", ("GET", "/v2/inputs/{input_id}/image"): "read",
    ("GET", "/v2/inputs/{input_id}/thumbnail"): "read", ("GET", "/v2/loupe/recent-images/{sha256}"): "read",
    ("PATCH", "/v2/inputs"): "label", ("DELETE", "/v2/inputs/{input_id}"): "manage", ("DELETE", "/v2/inputs"): "manage",
    ("GET", "/v2/models"): "read", ("POST", "/v2/models"): "label", ("POST", "/v2/models/searches"): "read",
    ("PATCH", "/v2/models"): "manage", ("DELETE", "/v2/models"): "manage", ("GET", "/v2/models/{model_id}"): "read",
    ("DELETE", "/v2/models/{model_id}"): "manage", ("GET", "/v2/models/{model_id}/output_info"): "read",
    ("GET", "/v2/models/{model_id}/versions/{version_id}/output_info"): "read",
    ("GET", "/v2/models/{model_id}/versions"): "read", ("POST", "/v2/models/{model_id}/versions"): "label",
    ("GET", "/v2/models/{model_id}/versions/{version_id}"): "read",
    ("DELETE", "/v2/models/{model_id}/versions/{version_id}"): "manage",
    ("POST", "/v2/models/{model_id}/versions/{version_id}/metrics"): "label",
    ("GET", "/v2/models/{model_id}/versions/{version_id}/metrics"): "read",
    ("POST", "/v2/models/{model_id}/publish"): "manage", ("POST", "/v2/models/{model_id}/rollback"): "manage",
    ("POST", "/v2/models/{model_id}/versions/{version_id}/publish"): "manage",
    ("GET", "/v2/models/{model_id}/versions/{version_id}/changes"): "read",
    ("GET", "/v2/models/{model_id}/drift"): "read",
    ("POST", "/v2/models/{model_id}/outputs"): "read", ("POST", "/v2/models/{model_id}/versions/{version_id}/outputs"): "read",
    ("GET", "/v2/models/{model_id}/inputs"): "read", ("GET", "/v2/models/{model_id}/versions/{version_id}/inputs"): "read",
    ("POST", "/v2/models/{model_id}/feedback"): "read", ("POST", "/v2/models/{model_id}/versions/{version_id}/feedback"): "read",
    ("POST", "/v2/searches/feedback"): "read", ("GET", "/v2/models/{model_id}/advice"): "read",
    ("GET", "/v2/models/{model_id}/suggestions"): "read", ("POST", "/v2/models/{model_id}/advice/dismissals"): "label",
    ("POST", "/v2/searches"): "read",
    ("POST", "/v2/workflows"): "manage", ("GET", "/v2/workflows"): "read", ("GET", "/v2/public_workflows"): "read",
    ("GET", "/v2/workflows/{workflow_id}"): "read", ("DELETE", "/v2/workflows/{workflow_id}"): "manage",
    ("DELETE", "/v2/workflows"): "manage", ("POST", "/v2/workflows/{workflow_id}/results"): "read",
    ("GET", "/v2/loupe/app"): "read", ("GET", "/v2/loupe/status"): "read",
    # Loupe's account routes (only on /v2)
    ("DELETE", "/v2/loupe/session"): "account", ("GET", "/v2/loupe/me"): "account", ("POST", "/v2/loupe/apps"): "account",
    ("DELETE", "/v2/loupe/apps/{app_id}"): "own",
    ("GET", "/v2/loupe/apps/{app_id}/keys"): "manage", ("POST", "/v2/loupe/apps/{app_id}/keys"): "manage",
    ("DELETE", "/v2/loupe/apps/{app_id}/keys/{key_id}"): "manage",
    ("GET", "/v2/loupe/apps/{app_id}/members"): "read", ("POST", "/v2/loupe/apps/{app_id}/members"): "own",
    ("DELETE", "/v2/loupe/apps/{app_id}/members/{user}"): "own", ("GET", "/v2/loupe/apps/{app_id}/audit"): "manage",
    ("GET", "/v2/loupe/apps/{app_id}/audit/export"): "manage",
    ("GET", "/v2/loupe/tokens"): "account", ("POST", "/v2/loupe/tokens"): "account",
    ("DELETE", "/v2/loupe/tokens/{token_id}"): "account",
    ("GET", "/v2/loupe/users"): "server", ("POST", "/v2/loupe/users"): "server",
    ("DELETE", "/v2/loupe/users/{name}"): "server",
}
PUBLIC = {("POST", "/v2/loupe/session")}
USER_PREFIX = "/v2/users/me/apps/{app_id}"
# Path parameters of the probes: nothing by these names exists, so an allowed call fails in the handler
# (404 of the input, model, ...) or on its body, never changing app "a".
PROBE_PARAMS = {"app_id": "a", "sha256": "0" * 64, "user": "nobody", "name": "nobody"}


def _photos(concept: str, n: int) -> list[bytes]:
    return [p.read_bytes() for p in dataset_images(CLOTHING / "train" / concept, n)]


@pytest.fixture(scope="module")
def world(tmp_path_factory, shared_backbones):
    data = tmp_path_factory.mktemp("accounts")
    loupe = Loupe(Config(data_dir=data / "d", auto_retrain=False), backbones=shared_backbones)
    loupe.users.create("root", PASSWORD, admin=True)
    for name in [*MEMBERS, "nora"]:
        loupe.users.create(name, PASSWORD)
    loupe.apps.create("a", owner="olive")
    loupe.apps.create("b", owner="nora")
    for name, role in MEMBERS.items():
        if role is not Role.OWNER:
            loupe.members.add("a", name, role)
    items = [NewInput(id=f"{c}-{i}", image=raw, concepts=[c]) for c in ("hat", "shoes")
             for i, raw in enumerate(_photos(c, 4))]
    loupe.inputs.add("a", items)
    loupe.models.create("a", "m", concept_ids=["hat", "shoes"], mutually_exclusive=True)
    loupe.trainer.train("a", "m", wait=True)
    tokens = {name: loupe.keys.create_token(name, name="tests")[0] for name in ["root", *MEMBERS, "nora"]}
    keys = {"all": loupe.keys.create("a", "all"), "label": loupe.keys.create("a", "label"),
            "predict": loupe.keys.create("a", "predict"), "b": loupe.keys.create("b")}
    with InProcessServer(create_app(loupe)) as server, httpx.Client(base_url=server.base, timeout=60) as http:
        yield http, loupe, tokens, keys
    loupe.close()


def key(value: str) -> dict:
    return {"Authorization": f"Key {value}"}


def _fill(path: str) -> str:
    for part in path.split("/"):
        if part.startswith("{"):
            name = part.strip("{}").split(":")[0]
            path = path.replace(part, PROBE_PARAMS.get(name, "nope"))
    return path


def _app_missing(r: httpx.Response) -> bool:
    return r.status_code == 404 and "app 'a' does not exist" in r.text


def test_every_route_has_a_permission_and_each_role_gets_exactly_it(world):
    http, loupe, tokens, keys = world
    application = create_app(loupe)
    served = set()
    for route in application.routes:
        path = route.path.replace(":str", "")
        for method in route.methods - {"OPTIONS", "HEAD"}:
            served.add((method, path))
    plain = {(m, p) for m, p in served if p.startswith("/v2/") and not p.startswith("/v2/users/")}
    scoped = {(m, p[len(USER_PREFIX):]) for m, p in served if p.startswith(USER_PREFIX)}
    missing = sorted((plain | {(m, "/v2" + p) for m, p in scoped}) - set(ROUTE_PERMISSIONS) - PUBLIC)
    assert not missing, f"routes nobody decided a permission for: add them to ROUTE_PERMISSIONS: {missing}"
    assert sorted(set(ROUTE_PERMISSIONS) - plain) == [], "ROUTE_PERMISSIONS names routes the server lacks"
    app_routes = {("/v2" + p, m) for m, p in scoped}
    assert len(app_routes) >= 46

    checked = 0
    for (method, path), need in sorted(ROUTE_PERMISSIONS.items()):
        if (method, path) == ("DELETE", "/v2/loupe/apps/{app_id}"):
            continue  # allowed would delete the app: tried below on an app of its own
        body = b"{not json"  # an allowed call stops at its body, or at the missing resource it names
        if need in ALLOWED:
            # Each member with a personal access token, on the user-scoped path when it is an app route.
            target = USER_PREFIX + path[3:] if (path, method) in app_routes else path
            for user in ["root", *MEMBERS, "nora"]:
                r = http.request(method, _fill(target), headers=key(tokens[user]), content=body)
                role = "owner" if user == "root" else MEMBERS[user].value if user in MEMBERS else None
                if role is None:
                    assert _app_missing(r), (method, path, user, r.status_code, r.text)  # a non-member sees no app
                elif role in ALLOWED[need]:
                    assert r.status_code not in (401, 403) and not _app_missing(r), (method, path, user, r.text)
                else:
                    assert r.status_code == 403, (method, path, user, r.status_code, r.text)
                checked += 1
            # App keys on the /v2 paths act with their scope's role in their own app only.
            for scope, role in (("all", "admin"), ("label", "labeler"), ("predict", "viewer")):
                r = http.request(method, _fill(path), headers=key(keys[scope]), content=body)
                if role in ALLOWED[need]:
                    assert r.status_code not in (401, 403) and not _app_missing(r), (method, path, scope, r.text)
                else:
                    assert r.status_code == 403, (method, path, scope, r.status_code)
                checked += 1
            r = http.request(method, _fill(target if "{app_id}" in target else path), headers=key(keys["b"]),
                             content=body)
            if "{app_id}" in target:
                assert _app_missing(r), (method, path, "key of b", r.status_code)  # another app's key
        else:
            for user in ["root", *MEMBERS]:
                r = http.request(method, _fill(path), headers=key(tokens[user]), content=body)
                if need == "server" and user != "root":
                    assert r.status_code == 403, (method, path, user, r.status_code)
                else:
                    assert r.status_code not in (401, 403), (method, path, user, r.status_code, r.text)
                checked += 1
            r = http.request(method, _fill(path), headers=key(keys["all"]), content=body)
            assert r.status_code == 403, (method, path, "app key", r.status_code)  # an app key is no user
        assert http.request(method, _fill(path), content=body).status_code == 401  # no credential at all
    assert checked > 500
    # A personal access token on an app-key path: the app must be named.
    r = http.get("/v2/inputs", headers=key(tokens["vic"]))
    assert r.status_code == 400 and "/v2/users/me/apps/" in r.text
    # Deleting an app: only its owner (or a server admin).
    loupe.apps.create("scratch", owner="olive")
    loupe.members.add("scratch", "adam", "admin")
    assert http.delete("/v2/loupe/apps/scratch", headers=key(tokens["adam"])).status_code == 403
    assert http.delete("/v2/loupe/apps/scratch", headers=key(tokens["nora"])).status_code == 404
    assert http.delete("/v2/loupe/apps/scratch", headers=key(tokens["olive"])).status_code == 200
    assert loupe.members.apps_of(loupe.users.get("adam"))[0].app.id == "a"  # scratch is gone, its members too


def test_a_token_works_across_the_users_apps_with_their_roles(world):
    http, loupe, tokens, _ = world
    olive = key(tokens["olive"])
    r = http.post("/v2/loupe/apps", headers=olive, json={"id": "olives-second"})
    assert r.status_code == 200 and r.json()["app"]["role"] == "owner"
    me = http.get("/v2/loupe/me", headers=olive).json()
    assert {a["id"]: a["role"] for a in me["apps"]} == {"a": "owner", "olives-second": "owner"}
    assert [a for a in me["apps"] if a["id"] == "a"][0]["input_count"] == 8
    # The same routes, two apps, one token; answers carry image URLs on the user-scoped path.
    inputs = http.get("/v2/users/me/apps/a/inputs", headers=olive).json()["inputs"]
    assert len(inputs) == 8 and "/v2/users/me/apps/a/inputs/" in inputs[0]["data"]["image"]["url"]
    image = http.get(inputs[0]["data"]["image"]["url"].split("127.0.0.1:8080")[-1], headers=olive)
    assert image.status_code == 200 and image.content[:2] == b"\xff\xd8"
    assert http.get("/v2/users/me/apps/olives-second/inputs", headers=olive).json()["inputs"] == []
    photo = base64.b64encode(_photos("hat", 1)[0]).decode()
    r = http.post("/v2/users/me/apps/a/models/m/outputs", headers=key(tokens["vic"]),
                  json={"inputs": [{"data": {"image": {"base64": photo}}}]})
    assert r.status_code == 200 and r.json()["outputs"][0]["data"]["concepts"][0]["name"] == "hat"
    # Tokens: listed with their last use, revocable by their user only.
    listed = http.get("/v2/loupe/tokens", headers=olive).json()["keys"]
    assert len(listed) == 1 and listed[0]["last_used_at"] is not None and listed[0]["scope"] is None
    made = http.post("/v2/loupe/tokens", headers=olive, json={"name": "laptop"}).json()
    assert made["key"].startswith("lp_") and made["info"]["name"] == "laptop"
    assert http.delete(f"/v2/loupe/tokens/{made['info']['id']}", headers=key(tokens["vic"])).status_code == 404
    assert http.delete(f"/v2/loupe/tokens/{made['info']['id']}", headers=olive).status_code == 200
    assert http.get("/v2/loupe/me", headers=key(made["key"])).status_code == 401  # revoked at once
    loupe.apps.delete("olives-second")


def test_keys_of_an_app_are_managed_over_http_with_creator_name_and_last_use(world):
    http, loupe, tokens, keys = world
    adam = key(tokens["adam"])
    made = http.post("/v2/loupe/apps/a/keys", headers=adam, json={"name": "kiosk", "scope": "predict"}).json()
    info = made["info"]
    assert info["scope"] == "predict" and info["created_by"] == "user:adam" and info["last_used_at"] is None
    assert http.get("/v2/models", headers=key(made["key"])).status_code == 200
    listed = {k["id"]: k for k in http.get("/v2/loupe/apps/a/keys", headers=adam).json()["keys"]}
    assert listed[info["id"]]["last_used_at"] is not None and listed[info["id"]]["name"] == "kiosk"
    assert all(k["scope"] is not None for k in listed.values())  # tokens are not app keys
    # An admin's all-scope app key manages keys too (it acts as an admin of its app)
    assert http.get("/v2/loupe/apps/a/keys", headers=key(keys["all"])).status_code == 200
    assert http.delete(f"/v2/loupe/apps/a/keys/{info['id']}", headers=key(tokens["lara"])).status_code == 403
    assert http.delete(f"/v2/loupe/apps/a/keys/{info['id']}", headers=adam).status_code == 200
    assert http.get("/v2/models", headers=key(made["key"])).status_code == 401


def _session(http: httpx.Client, user: str, password: str = PASSWORD) -> httpx.Response:
    return http.post("/v2/loupe/session", json={"username": user, "password": password})


def test_sessions_set_a_strict_httponly_cookie_and_writes_need_the_csrf_token(world):
    http, loupe, _, _ = world
    with httpx.Client(base_url=str(http.base_url), timeout=60) as browser:
        r = _session(browser, "lara")
        assert r.status_code == 200, r.text
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        assert "secure" not in cookie  # plain http here; behind https (public_url) it is Secure
        csrf = r.json()["csrf_token"]
        me = browser.get("/v2/loupe/me").json()
        assert me["user"]["name"] == "lara" and me["via"] == "session" and me["csrf_token"] == csrf
        concept = {"concepts": [{"id": "scarf"}]}
        r = browser.post("/v2/users/me/apps/a/concepts", json=concept)
        assert r.status_code == 403 and "X-CSRF-Token" in r.text  # a cross-site form could not send it
        r = browser.post("/v2/users/me/apps/a/concepts", json=concept, headers={"X-CSRF-Token": "wrong"})
        assert r.status_code == 403
        r = browser.post("/v2/users/me/apps/a/concepts", json=concept, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, r.text
        assert browser.get("/v2/users/me/apps/a/concepts/scarf").status_code == 200  # reads need no token
        assert browser.get("/v2/users/me/apps/b/concepts").status_code == 404  # not lara's app
        r = browser.delete("/v2/loupe/session", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200
        assert browser.get("/v2/loupe/me").status_code == 401  # the cookie is gone (and revoked)
    # A revoked session stays revoked even if the cookie was kept.
    with httpx.Client(base_url=str(http.base_url), timeout=60) as stolen:
        r = _session(stolen, "vic")
        token = stolen.cookies.get("loupe_session")
        stolen.delete("/v2/loupe/session", headers={"X-CSRF-Token": r.json()["csrf_token"]})
        assert http.get("/v2/loupe/me", headers={"Cookie": f"loupe_session={token}"}).status_code == 401
        # A new password ends every session of the user.
        r = _session(stolen, "vic")
        token = stolen.cookies.get("loupe_session")
        assert http.get("/v2/loupe/me", headers={"Cookie": f"loupe_session={token}"}).status_code == 200
        loupe.users.set_password("vic", PASSWORD)
        assert http.get("/v2/loupe/me", headers={"Cookie": f"loupe_session={token}"}).status_code == 401
    assert _session(http, "vic", "wrong password").status_code == 401


@pytest.fixture
def strict(tmp_path, shared_backbones):
    """A server with short sessions and tight sign-in limits."""
    limits = AccountLimits(session_idle_seconds=1.0, session_max_seconds=2.5, login_failures_per_user=3,
                           login_failures_per_address=8, login_window_seconds=60.0)
    loupe = Loupe(Config(data_dir=tmp_path / "s", accounts=limits), backbones=shared_backbones)
    for name in ("ann", "ben", "cat"):
        loupe.users.create(name, PASSWORD)
    with InProcessServer(create_app(loupe)) as server, httpx.Client(base_url=server.base, timeout=60) as http:
        yield http, loupe
    loupe.close()


def test_sessions_expire_when_idle_and_when_old(strict):
    http, _ = strict
    _session(http, "ann")
    assert http.get("/v2/loupe/me").status_code == 200
    time.sleep(1.3)
    assert http.get("/v2/loupe/me").status_code == 401  # idle longer than 1 s
    http.cookies.clear()
    import loupe.accounts.sessions as sessions_module

    old = sessions_module.TOUCH_EVERY_SECONDS
    sessions_module.TOUCH_EVERY_SECONDS = 0.0  # every use counts, so only the absolute limit ends it
    try:
        _session(http, "ann")
        token = http.cookies.get("loupe_session")
        http.cookies.clear()  # sent by hand below: the browser would drop it at Max-Age anyway
        started = time.time()
        while time.time() - started < 2.0:
            r = http.get("/v2/loupe/me", headers={"Cookie": f"loupe_session={token}"})
            assert r.status_code == 200, (r.text, time.time() - started)
            time.sleep(0.4)
        time.sleep(0.8)
        assert http.get("/v2/loupe/me", headers={"Cookie": f"loupe_session={token}"}).status_code == 401  # older than 2.5 s
    finally:
        sessions_module.TOUCH_EVERY_SECONDS = old


def test_failed_sign_ins_are_throttled_and_unknown_users_cost_the_same(strict):
    http, _ = strict

    def timed(user: str, password: str) -> tuple[int, float]:
        started = time.perf_counter()
        status = _session(http, user, password).status_code
        return status, time.perf_counter() - started

    known = [timed("ann", "wrong password") for _ in range(3)]
    unknown = [timed(f"ghost{i}", "wrong password") for i in range(3)]
    assert {s for s, _ in known + unknown} == {401}
    known_s, unknown_s = sorted(t for _, t in known)[1], sorted(t for _, t in unknown)[1]
    assert 0.5 < unknown_s / known_s < 2.0, (known_s, unknown_s)  # argon2 runs either way
    r = _session(http, "ann")  # the right password, after 3 failures: still refused for a while
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert _session(http, "ben").status_code == 200  # other users are not locked out by ann's failures
    assert timed("ben", "wrong")[0] == 401
    # 3 + 3 + 1 failures from this address so far; the 8th is the per-address limit
    assert timed("cat", "wrong")[0] == 401
    assert _session(http, "cat").status_code == 429


def test_audit_records_who_changed_what_for_every_write_kind(world):
    http, loupe, tokens, keys = world
    lara, adam, olive = key(tokens["lara"]), key(tokens["adam"]), key(tokens["olive"])
    base = "/v2/users/me/apps/a"
    since = time.time()
    photo = base64.b64encode(_photos("hat", 6)[5]).decode()
    assert http.post(f"{base}/inputs", headers=lara, json={"inputs": [
        {"id": "audited", "data": {"image": {"base64": photo}, "concepts": [{"id": "hat"}]}}]}).status_code == 200
    assert http.patch(f"{base}/inputs", headers=lara, json={"action": "overwrite", "inputs": [
        {"id": "audited", "data": {"concepts": [{"id": "shoes"}, {"id": "hat", "value": 0}]}}]}).status_code == 200
    assert http.post(f"{base}/concepts", headers=lara, json={"concepts": [{"id": "belt"}]}).status_code == 200
    assert http.patch(f"{base}/concepts", headers=lara, json={"action": "overwrite",
                                                              "concepts": [{"id": "belt", "name": "Belt"}]}).status_code == 200
    assert http.post(f"{base}/models", headers=lara, json={"model": {"id": "m2", "output_info": {
        "data": {"concepts": [{"id": "hat"}, {"id": "shoes"}]}}}}).status_code == 200
    trained = http.post(f"{base}/models/m2/versions", headers=lara).json()["model"]["model_version"]["id"]
    assert http.patch(f"{base}/models", headers=adam, json={"action": "merge", "models": [
        {"id": "m2", "name": "second"}]}).status_code == 200
    assert http.post(f"{base}/models/m2/advice/dismissals", headers=lara,
                     json={"input_id": "audited", "concept_id": "shoes"}).status_code == 200
    assert http.post(f"{base}/models/m2/feedback", headers=key(tokens["vic"]), json={"input": {"id": "x"}}).status_code == 200
    assert http.post(f"{base}/workflows", headers=adam, json={"workflows": [
        {"id": "w", "nodes": [{"id": "n", "model": {"id": "m2"}}]}]}).status_code == 200
    assert http.delete(f"{base}/workflows/w", headers=adam).status_code == 200
    assert http.delete(f"{base}/models/m2/versions/{trained}", headers=adam).status_code == 200
    assert http.delete(f"{base}/models/m2", headers=adam).status_code == 200
    made = http.post("/v2/loupe/apps/a/keys", headers=adam, json={"name": "audit"}).json()["info"]
    assert http.delete(f"/v2/loupe/apps/a/keys/{made['id']}", headers=adam).status_code == 200
    assert http.post("/v2/loupe/apps/a/members", headers=olive, json={"user": "nora", "role": "viewer"}).status_code == 200
    assert http.delete("/v2/loupe/apps/a/members/nora", headers=olive).status_code == 200
    assert http.delete(f"{base}/inputs/audited", headers=key(keys["all"])).status_code == 200  # an app key

    entries = http.get("/v2/loupe/apps/a/audit", headers=adam, params={"since": since, "per_page": 1000}).json()["entries"]
    done = {(c["resource"], c["op"], e["actor"]["kind"], e["actor"]["id"]) for e in entries for c in e["changes"]}
    key_id = loupe.keys.verify(keys["all"]).id
    for expected in [("input", "create", "user", "lara"), ("input", "update", "user", "lara"),
                     ("concept", "create", "user", "lara"), ("concept", "update", "user", "lara"),
                     ("model", "create", "user", "lara"), ("version", "create", "user", "lara"),
                     ("version", "update", "system", ""),  # the train's outcome
                     ("model", "update", "user", "adam"), ("dismissal", "create", "user", "lara"),
                     ("feedback", "create", "user", "vic"), ("workflow", "create", "user", "adam"),
                     ("workflow", "delete", "user", "adam"), ("version", "delete", "user", "adam"),
                     ("model", "delete", "user", "adam"), ("key", "create", "user", "adam"),
                     ("key", "delete", "user", "adam"), ("member", "create", "user", "olive"),
                     ("member", "delete", "user", "olive"), ("input", "delete", "key", key_id)]:
        assert expected in done, expected
    edit = next(c for e in entries for c in e["changes"] if c["resource"] == "input" and c["op"] == "update")
    assert edit["before"] == {"concepts": ["hat"], "not_concepts": []}
    assert edit["after"] == {"concepts": ["shoes"], "not_concepts": ["hat"]}
    assert all(e["actor"]["via"].startswith("token:") for e in entries if e["actor"]["kind"] == "user")
    assert [e["seq"] for e in entries] == sorted((e["seq"] for e in entries), reverse=True)  # newest first
    # Filters, and the JSON-lines export.
    by_adam = http.get("/v2/loupe/apps/a/audit", headers=adam, params={"actor": "adam", "since": since}).json()["entries"]
    assert by_adam and all(e["actor"]["id"] == "adam" for e in by_adam)
    keys_only = http.get("/v2/loupe/apps/a/audit", headers=adam, params={"resource": "key", "since": since}).json()
    assert len(keys_only["entries"]) == 2
    assert http.get("/v2/loupe/apps/a/audit", headers=adam, params={"resource": "nope"}).status_code == 400
    r = http.get("/v2/loupe/apps/a/audit/export", headers=adam, params={"since": since})
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert r.headers["content-type"].startswith("application/x-ndjson") and len(lines) == len(entries)
    assert http.get("/v2/loupe/apps/a/audit", headers=key(tokens["lara"])).status_code == 403
    # The audit trail is the app's: app b's shows none of it.
    from loupe.accounts.audit import AuditQuery

    assert all(e.actor.id != "lara" for e in loupe.audit.page("b", AuditQuery()))


def test_audit_retention_keeps_the_newest(tmp_path, shared_backbones):
    from loupe.accounts.audit import AuditQuery
    from loupe.store.accounts import AuditRetention

    loupe = Loupe(Config(data_dir=tmp_path / "r", accounts=AccountLimits(audit_max_entries=5)),
                  backbones=shared_backbones)
    assert loupe.store.audit == AuditRetention(5, 365 * 86400.0)
    loupe.apps.create("r")
    for i in range(12):
        loupe.concepts.add("r", [(f"c{i}", None)])
    entries = loupe.audit.page("r", AuditQuery())
    assert [e.changes[0].id for e in entries] == [f"c{i}" for i in range(11, 6, -1)]
    with loupe.store.read() as tx:
        first, end = tx.audit_bounds("r")
    assert end - first == 5
    loupe.close()
