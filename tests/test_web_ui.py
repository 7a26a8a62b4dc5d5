"""The web page in real headless Chromium (Debian's, driven by Playwright) against a real `loupe serve`:
upload labeled images of two concepts, train, predict a held-out image, fix a label from the advice
view. Screenshots of each view go to artifacts/screenshots/."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from conftest import CALTECH, CLOTHING, REPO, dataset_images

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = REPO / "artifacts" / "screenshots"
# Flags for a closed network: no background connections, no first-run, no sandbox (CI runs as root).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium package is needed (.ci/run installs it)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.csp_violations = []  # the page runs under its real Content-Security-Policy
        page.on("console", lambda m: "Content Security Policy" in m.text and page.csp_violations.append(m.text))
        yield page
        assert page.csp_violations == []
        browser.close()


def wait_until(page, expression: str, timeout: int = 30_000) -> None:
    """Poll a JS expression from outside the page (Playwright's wait_for_function evaluates strings
    inside the page, which its CSP forbids, rightly)."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.1)


# How far the page itself scrolls sideways (wide tables scroll inside their own box instead).
PAGE_SCROLLS_SIDEWAYS = "(() => { window.scrollTo(10000, window.scrollY); const x = window.scrollX; window.scrollTo(0, window.scrollY); return x; })()"
WIDE_ELEMENTS = ("[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)"
                 ".map(e => e.tagName + '#' + e.id + '.' + e.className).slice(0, 8)")


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in_with_key(page, base: str, key: str) -> None:
    page.goto(base + "/")
    page.click("#key-signin summary")  # key sign-in sits under the user sign-in
    page.fill("#key", key)
    page.click("#signin-form button")
    page.wait_for_selector("#main:not([hidden])")


def upload(page, concepts: str, files: list[Path], done_before: int) -> None:
    page.fill("#up-concepts", concepts)
    page.set_input_files("#files", [str(f) for f in files])
    wait_until(
        page, f"document.querySelectorAll('#upload-list .state.ok, #upload-list .state.failed').length >= {done_before + len(files)}",
        timeout=120_000)


def test_label_train_predict_and_fix_in_the_browser(live_server, page, tmp_path):
    base, key = live_server
    shoes = dataset_images(CLOTHING / "train" / "shoes", 9)
    also_wrong = tmp_path / "actually-a-shoe.jpg"
    shutil.copy(shoes.pop(), also_wrong)
    hats = dataset_images(CLOTHING / "train" / "hat", 9)
    wrong = tmp_path / "actually-a-hat.jpg"
    shutil.copy(hats[8], wrong)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not a picture")
    held_out = dataset_images(CLOTHING / "test" / "hat", 2)[1]
    airplane = sorted((CALTECH / "airplanes").glob("*.jpg"))[0]

    page.goto(base + "/")
    page.click("#key-signin summary")  # key sign-in sits under the user sign-in
    page.fill("#key", key)
    page.click("#signin-form button")
    page.wait_for_selector("#main:not([hidden])")
    assert "App live" in page.inner_text("#app-summary")

    page.click("nav [data-view=inputs]")
    upload(page, "shoes", shoes + [wrong], 0)
    upload(page, "hat", hats[:8] + [also_wrong, broken], 9)
    failed = page.inner_text("#upload-list li[data-file='broken.jpg']")
    assert "failed" in failed and "not an image" in failed
    wrong_id = page.get_attribute("#upload-list li[data-file='actually-a-hat.jpg']", "data-input")
    also_wrong_id = page.get_attribute("#upload-list li[data-file='actually-a-shoe.jpg']", "data-input")
    wait_until(page, "document.querySelectorAll('#grid figure').length === 18")
    assert "actually-a-hat.jpg" in page.inner_text("#grid")  # file names, not hex ids
    assert page.inner_text("#page-label") == "Page 1 of 1 (18 inputs)" and page.is_disabled("#next")
    wait_until(page, "[...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)")
    # Label a selection at once, then browse by that concept.
    page.check("#grid figure:nth-child(1) input[type=checkbox]")
    page.check("#grid figure:nth-child(2) input[type=checkbox]")
    page.click("details.typed-label summary")  # the palette is the quick way; typing a name still works
    page.fill("#label-concept", "favourite")
    page.click("#apply-label")
    wait_until(page, "document.querySelector('#label-status').textContent.includes('Labeled 2 as favourite')")
    page.select_option("#filter", "favourite")
    wait_until(page, "document.querySelectorAll('#grid figure').length === 2")
    shot(page, "1-inputs")
    page.select_option("#filter", "")

    page.click("nav [data-view=overview]")
    assert "18 inputs" in page.inner_text("#app-summary")
    assert "favourite\t2\t0" in page.inner_text("#concepts-table")
    shot(page, "0-overview")

    page.click("nav [data-view=models]")
    page.fill("#model-id", "garments")
    page.check("#model-concepts input[value=shoes]")
    page.check("#model-concepts input[value=hat]")
    page.check("#model-me")
    assert not page.is_checked("#model-closed")  # the default is the API's and the clients': open
    page.click("#model-form details.negatives summary")
    assert "never a negative" in page.inner_text("#model-form details.negatives table")
    page.check("#model-closed")  # closed: the predict view below warns about an out-of-scope photo
    page.click("#model-form button[type=submit]")
    page.wait_for_selector(".notice:has-text('Model garments created')")
    page.click("text=Train garments")
    wait_until(page, "document.querySelector('#train-status').textContent.includes('trained')", timeout=60_000)
    assert "trained" in page.inner_text("#models-table tr[data-model=garments] .version")
    assert "unlabeled" in page.inner_text("#models-table tr[data-model=garments] .version small.unlabeled")
    page.click("#models-table tr[data-model=garments] details.history summary")
    page.wait_for_selector("#models-table tr[data-model=garments] table.versions tbody tr:nth-child(2)")
    assert "Model is trained" in page.inner_text("#models-table tr[data-model=garments] table.versions")
    shot(page, "2-models")

    page.click("nav [data-view=predict]")
    page.select_option("#predict-model", "garments")
    page.set_input_files("#predict-file", str(held_out))
    page.wait_for_selector("#top-concept")
    assert page.inner_text("#top-concept") == "hat"
    assert page.locator("#predict-result .bar-row").count() == 2
    wait_until(page, "document.querySelector('#predict-result .query img').naturalWidth > 0")  # the query image
    assert page.locator("#out-of-scope").count() == 0
    wait_until(page, "[...document.querySelectorAll('#predict-result .thumbs .name')].every(s => s.textContent.endsWith('.jpg'))")
    shot(page, "3-predict")
    page.set_input_files("#predict-file", str(airplane))  # not a garment: the closed model says so
    page.wait_for_selector("#out-of-scope")
    assert "unlike every example labeled for garments" in page.inner_text("#out-of-scope")
    shot(page, "3-predict-out-of-scope")
    page.select_option("#predict-model", "aaa03c23b3724a16a56b629203edc62c")  # the built-in General model
    wait_until(page, "document.querySelectorAll('#predict-result .bar-row').length === 20")
    assert "airliner" in page.inner_text("#predict-result .bars")
    shot(page, "3-predict-general")

    page.click("nav [data-view=search]")
    page.set_input_files("#search-file", str(held_out))
    page.wait_for_selector("#search-results figure")
    shot(page, "4-search")

    page.click("nav [data-view=evaluate]")
    page.select_option("#eval-model", "garments")
    page.click("#eval-go")
    page.wait_for_selector("#eval-table", timeout=60_000)
    assert page.locator("#confusion").count() == 1 and page.locator("#eval-result svg polyline").count() == 4
    charts = page.inner_text("#eval-result .charts")
    assert "false positive rate" in page.inner_html("#eval-result .charts") and "hat (AUC" in charts
    assert page.locator("#eval-result svg line[stroke-dasharray]").count() == 1  # the ROC diagonal
    shown = page.locator("#eval-result .misclassified figure").count()
    heading = page.inner_text("h3:has-text('Misclassified')")
    assert heading.startswith("Misclassified") and str(shown) in heading
    if shown:
        assert "predicted as" in page.inner_text("#eval-result .misclassified")
    shot(page, "5-evaluate")

    page.click("nav [data-view=advice]")
    page.select_option("#advice-model", "garments")
    page.click("#advice-go")
    fix = page.locator(f".finding.suspected_mislabel[data-inputs='{wrong_id}'] button.fix")
    fix.wait_for(timeout=60_000)
    assert "as hat" in fix.inner_text()
    assert page.locator("details.group.few_examples .finding").count() == 1  # one line, not one per concept
    shot(page, "6-advice")
    # The person looks at the other one and decides the label is right: dismissed on the server, so it
    # does not come back on the next check, in this browser or any other.
    dismiss = page.locator(f".finding.suspected_mislabel[data-inputs='{also_wrong_id}'] button.dismiss-finding")
    dismiss.click()
    page.wait_for_selector(f".finding[data-inputs='{also_wrong_id}']", state="detached")
    page.click("#advice-go")
    fix.wait_for(timeout=60_000)
    assert page.locator(f".finding[data-inputs='{also_wrong_id}']").count() == 0
    fix.click()  # the photo beside an example of the suggested concept, asked once
    confirm = page.locator(f".finding[data-inputs='{wrong_id}'] .confirm")
    confirm.locator("figure").nth(1).wait_for()
    assert confirm.locator("figure").count() == 2 and "rather than" in confirm.inner_text()
    assert confirm.locator("button.none-of-these").count() == 1 and confirm.locator("input.other").count() == 1
    shot(page, "6-advice-confirm")
    confirm.locator("button.confirm-relabel").click()
    page.wait_for_selector(".relabel-status, .error:not([hidden])")
    assert page.locator(".error:not([hidden])").count() == 0, page.inner_text("body")
    status = page.inner_text(".relabel-status")
    before, after = (float(s) for s in status.split("hat ")[1].split(", shoes")[0].split(" → "))
    assert after > before + 0.1, status  # the answer moved at once, same version
    page.wait_for_selector(".retrain-status.ok", timeout=120_000)
    assert "Retrained" in page.inner_text(".retrain-status")
    page.wait_for_selector(".notice:has-text('retrained in the background')", timeout=30_000)
    shot(page, "7-advice-fixed")

    # Label next: three new, unlabeled photos; the page suggests them with the model's guess, one click labels.
    page.click("nav [data-view=inputs]")
    page.fill("#up-concepts", "")
    done = page.locator("#upload-list .state.ok, #upload-list .state.failed").count()
    page.set_input_files("#files", [str(p) for p in dataset_images(CLOTHING / "test" / "shoes", 3, start=2)])
    wait_until(page, f"document.querySelectorAll('#upload-list .state.ok, #upload-list .state.failed').length >= {done + 3}")
    page.click("nav [data-view=next]")
    page.select_option("#next-model", "garments")
    page.click("#next-go")
    page.wait_for_selector("#next-result figure button.label-it")
    assert page.locator("#next-result figure:not(.out-of-scope)").count() == 3
    assert "model's guess" in page.inner_text("#next-result")
    # The airplane predicted above was out of scope: label next offers it too.
    page.wait_for_selector("#out-of-scope-heading")
    assert page.locator("#next-result figure.out-of-scope").count() >= 1
    wait_until(page, "[...document.querySelectorAll('#next-result figure.out-of-scope img')].every(i => i.naturalWidth > 0)")
    shot(page, "9-label-next")
    first = page.locator("#next-result figure:not(.out-of-scope)").first
    first.locator("button.label-it").click()  # nothing chosen: it says so beside the button
    assert "choose a concept first" in first.locator(".error.inline").inner_text()
    first.locator("select").select_option("shoes")
    first.locator("button.label-it").click()
    page.wait_for_selector("#next-result figcaption.ok")
    second = page.locator("#next-result figure:not(.out-of-scope)").nth(1)
    second.locator("button.none-of-these").click()  # not a hat nor a shoe: a negative of each
    page.wait_for_selector("#next-result figcaption.ok:has-text('none of')")

    assert page.request.get(base + "/static/favicon.svg").status == 200
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.click("nav [data-view=overview]")
    # Every tab in sight (none cut off at the edge), in at most three rows.
    assert page.evaluate("[...document.querySelectorAll('nav button:not([hidden])')].every("
                         "b => b.getBoundingClientRect().right <= window.innerWidth && b.getBoundingClientRect().left >= 0)")
    assert page.evaluate("document.querySelector('nav').getBoundingClientRect().height") < 130
    assert page.evaluate(PAGE_SCROLLS_SIDEWAYS) == 0, page.evaluate(WIDE_ELEMENTS)  # nothing runs off the screen
    shot(page, "8-phone-overview")
    page.click("nav [data-view=evaluate]")
    assert page.evaluate(PAGE_SCROLLS_SIDEWAYS) == 0, page.evaluate(WIDE_ELEMENTS)
    shot(page, "8-phone-evaluate")


def test_console_sign_in_create_app_key_member_label_and_audit(tmp_path, page):
    """A person's loop in the console: sign in with a password, create an app, make a key, add a
    member, label images, and read who did what in the audit log."""
    from real_server import Server

    from loupe.application import Loupe
    from loupe.config import Config

    data = tmp_path / "console-data"
    with Loupe(Config(data_dir=data)) as loupe:
        loupe.users.create("maria", "maria's password", admin=False)
        loupe.users.create("lars", "lars's password")
    server = Server(data).start()
    try:
        page.goto(server.base + "/")
        page.fill("#username", "maria")
        page.fill("#password", "wrong password")
        page.click("#login-form button")
        page.wait_for_selector("#login-form .error.inline")  # beside the button that caused it
        assert "wrong user name or password" in page.inner_text("#login-form .error.inline")
        page.fill("#password", "maria's password")
        page.click("#login-form button")
        page.wait_for_selector("#console:not([hidden])")
        assert "signed in as maria" in page.inner_text("#whoami") and page.is_visible("#no-apps")
        shot(page, "7-console-empty")

        page.fill("#new-app-id", "catalogue")
        page.click("#create-app-form button")
        page.wait_for_selector("#main:not([hidden])")
        assert "App catalogue" in page.inner_text("#app-summary") and "maria, owner" in page.inner_text("#app-summary")

        page.click("nav [data-view=keys]")
        page.fill("#key-name", "shop website")
        page.select_option("#key-scope", "predict")
        page.click("#key-form button")
        page.wait_for_selector("#new-key:not([hidden])")
        new_key = page.inner_text("#new-key-value")
        assert new_key.startswith("lk_")
        wait_until(page, "document.querySelectorAll('#keys-table tbody tr').length === 1")
        assert "shop website" in page.inner_text("#keys-table") and "predict" in page.inner_text("#keys-table")
        shot(page, "8-keys")

        page.click("nav [data-view=members]")
        page.fill("#member-user", "lars")
        page.select_option("#member-role", "labeler")
        page.click("#member-form button")
        wait_until(page, "document.querySelectorAll('#members-table tbody tr').length === 2")
        assert "labeler" in page.inner_text("#members-table tr[data-user=lars]")
        shot(page, "9-members")

        page.click("nav [data-view=inputs]")
        upload(page, "shoes", dataset_images(CLOTHING / "train" / "shoes", 3), 0)
        wait_until(page, "document.querySelectorAll('#grid figure').length === 3")
        page.click("#grid figure:nth-child(1) img")  # a click selects it; a new concept from the palette
        page.fill("#bench-new", "boots")
        page.press("#bench-new", "Enter")
        wait_until(page, "document.querySelector('#label-status').textContent.includes('Labeled 1 as boots')")

        page.click("nav [data-view=audit]")
        wait_until(page, "document.querySelectorAll('#audit-table tbody tr').length >= 6")
        audit = page.inner_text("#audit-table")
        assert "user maria" in audit and "input.create" in audit and "member.create" in audit
        assert "key.create" in audit and "app.create" in audit
        assert "shoes → boots, shoes" in audit or "shoes → shoes, boots" in audit  # the label edit, before and after
        page.select_option("#audit-resource", "member")
        page.click("#audit-go")
        # two entries: the app's creation (with maria as its owner) and lars joining
        wait_until(page, "document.querySelectorAll('#audit-table tbody tr').length === 2")
        assert "lars (labeler)" in page.inner_text("#audit-table")
        page.select_option("#audit-resource", "")
        page.click("#audit-go")
        wait_until(page, "document.querySelectorAll('#audit-table tbody tr').length >= 6")
        shot(page, "10-audit")

        # The key works for a program; the page's session cookie is not readable by scripts.
        import httpx

        assert httpx.get(server.base + "/v2/models", headers={"Authorization": f"Key {new_key}"}).status_code == 200
        assert "loupe_session" not in page.evaluate("document.cookie")
        # A reload keeps the session and the app; signing out ends it.
        page.reload()
        page.wait_for_selector("#main:not([hidden])")
        assert "App catalogue" in page.inner_text("#app-summary")
        page.click("#to-console")
        page.wait_for_selector("#console:not([hidden])")
        assert "catalogue" in page.inner_text("#apps-table")
        shot(page, "11-console")
        page.click("#console-signout")
        page.wait_for_selector("#signin:not([hidden])")
        assert httpx.get(server.base + "/v2/loupe/me").status_code == 401
    finally:
        server.stop()


def test_review_publish_and_roll_back_in_the_browser(tmp_path, page, shared_backbones):
    """A model that serves its published version: a retrain is only a candidate; the page shows what it
    would change (both versions' thresholds, the inputs that would get another answer), publishes it,
    and rolls back."""
    from real_server import InProcessServer

    from loupe.application import Loupe
    from loupe.config import Config
    from loupe.intake.inputs import NewInput
    from loupe.intake.labels import InputEdit
    from loupe.service.app import create_app

    classes = ["hat", "shoes", "dress", "shirt", "t-shirt"]
    with Loupe(Config(data_dir=tmp_path / "data", auto_retrain=False), backbones=shared_backbones) as loupe:
        loupe.apps.create("shop")
        loupe.inputs.add("shop", [NewInput(image=p.read_bytes(), concepts=[c], id=f"{c}-{i}")
                                  for c in classes for i, p in enumerate(dataset_images(CLOTHING / "train" / c, 12))])
        loupe.inputs.add("shop", [NewInput(image=p.read_bytes(), id=f"new-{c}-{i}")
                                  for c in classes for i, p in enumerate(dataset_images(CLOTHING / "test" / c, 6))])
        loupe.models.create("shop", "garments", concept_ids=classes, mutually_exclusive=True, serving="published")
        first = loupe.trainer.train("shop", "garments")
        loupe.models.publish("shop", "garments", first.id)
        loupe.inputs.edit("shop", "overwrite", [InputEdit(input_id=f"shirt-{i}", concepts=["t-shirt"]) for i in range(9)])
        second = loupe.trainer.train("shop", "garments")
        key = loupe.keys.create("shop")
        with InProcessServer(create_app(loupe)) as server:
            sign_in_with_key(page, server.base, key)
            page.click("nav [data-view=models]")
            row = "#models-table tr[data-model=garments]"
            assert f"serves {first.id[:8]} (published)" in page.inner_text(row)
            page.click(f"{row} button:has-text('Review & publish')")
            page.wait_for_selector("#publish-review #change-summary")
            summary = page.inner_text("#change-summary")
            report = loupe.changes.report("shop", "garments", second.id)
            assert f"{report.changed} of {report.compared} stored inputs" in summary and report.changed > 0
            assert page.locator("#publish-review table.side-by-side tbody tr").count() == len(classes)
            assert page.locator("#publish-review figure.change").count() == min(24, report.changed)
            wait_until(page, "[...document.querySelectorAll('#publish-review img')].every(i => i.complete && i.naturalWidth > 0)")
            shot(page, "12-review-before-publishing")
            page.click("#publish-go")
            page.wait_for_selector(f".notice:has-text('now serves version {second.id[:8]}')")
            wait_until(page, f"document.querySelector('{row}').textContent.includes('serves {second.id[:8]} (published)')")
            assert loupe.models.get("shop", "garments").published == second.id
            shot(page, "13-published")
            page.click(f"{row} button:has-text('Roll back')")
            page.wait_for_selector(f".notice:has-text('rolled back: it serves {first.id[:8]} again')")
            wait_until(page, f"document.querySelector('{row}').textContent.includes('serves {first.id[:8]} (published)')")
            assert loupe.models.get("shop", "garments").published == first.id
            shot(page, "14-rolled-back")
            # Predictions are counted per day: the models table shows the out-of-scope share.
            page.click("nav [data-view=predict]")
            page.select_option("#predict-model", "garments")
            page.set_input_files("#predict-file", str(sorted((CALTECH / "airplanes").glob("*.jpg"))[0]))
            page.wait_for_selector("#out-of-scope")
            page.click("nav [data-view=models]")
            page.wait_for_selector(f"{row} .drift svg rect")
            assert "out of scope: 100.0% of 1 today" in page.inner_text(f"{row} .drift")


def test_labeling_workbench_by_keyboard_guesses_undo_empty_states_and_duplicates(tmp_path, page, shared_backbones):
    """Issue 25: a new app's empty states each say what to do next (with the button); a grid labeled by
    keyboard only (arrows, space, shift+arrows, 1-9, n, u); the model's guesses accepted as a group with
    one left out; the same photo uploaded twice reported, not doubled; every view at desktop and phone
    width without sideways scrolling."""
    from real_server import InProcessServer

    from loupe.application import Loupe
    from loupe.config import Config
    from loupe.service.app import create_app

    with Loupe(Config(data_dir=tmp_path / "data", auto_retrain=False), backbones=shared_backbones) as loupe:
        loupe.apps.create("pets")
        key = loupe.keys.create("pets")
        with InProcessServer(create_app(loupe)) as server:
            sign_in_with_key(page, server.base, key)
            # Empty app: a checklist, and views that say what to do instead of failing.
            assert "Getting started (0 of 5)" in page.inner_text("#checklist")
            assert page.locator("#checklist li.todo button").count() == 5
            shot(page, "20-empty-overview")
            for view, says in (("evaluate", "create one"), ("advice", "create one"), ("next", "create one")):
                page.click(f"nav [data-view={view}]")
                box = page.locator(f"#view-{view} .empty-state .empty")
                assert says in box.inner_text() and box.locator("button").count() == 1, view
                assert page.locator(f"#view-{view} .needs-model").is_hidden()
                shot(page, f"20-empty-{view}")
            page.click("nav [data-view=models]")
            assert "label some photos first" in page.inner_text("#models-empty")
            page.click("nav [data-view=inputs]")
            assert "No photos yet" in page.inner_text("#grid .empty")
            shot(page, "20-empty-inputs")
            # Upload 12 photos (hats and shoes, unlabeled), then the first hat again: reported, not doubled.
            photos = [*dataset_images(CLOTHING / "train" / "hat", 6), *dataset_images(CLOTHING / "train" / "shoes", 6)]
            upload(page, "", photos, 0)
            again = tmp_path / "again.jpg"
            again.write_bytes(photos[0].read_bytes())
            page.set_input_files("#files", [str(again)])
            page.wait_for_selector("#upload-list li[data-file='again.jpg'] .state.duplicate")
            assert "already in the app" in page.inner_text("#upload-list li[data-file='again.jpg']")
            assert loupe.inputs.count("pets") == 12
            wait_until(page, "document.querySelectorAll('#grid figure').length === 12")
            # Newest first: the grid shows shoes 5..0 then hats 5..0. Label by keyboard only.
            # The first concepts, from the keyboard: the last photo (a hat) as "hat", the first as "shoes".
            page.focus("#grid figure:nth-child(1)")
            page.keyboard.press("End")
            page.keyboard.press("Space")
            page.focus("#bench-new")  # the palette's new-concept box (Tab order would reach it too)
            page.keyboard.type("hat")
            page.keyboard.press("Enter")
            wait_until(page, "document.querySelector('#label-status').textContent.includes('Labeled 1 as hat')")
            page.keyboard.press("Home")  # the grid has the focus again
            page.keyboard.press("Space")
            page.focus("#bench-new")
            page.keyboard.type("shoes")
            page.keyboard.press("Enter")
            wait_until(page, "document.querySelector('#label-status').textContent.includes('Labeled 1 as shoes')")
            wait_until(page, "document.querySelectorAll('#palette .concept-key').length === 2")
            assert {c.id for c in loupe.concepts.list_page("pets")} == {"hat", "shoes"}
            page.focus("#grid figure:nth-child(1)")
            page.keyboard.press("ArrowRight")  # shoes 4
            page.keyboard.press("Space")
            page.keyboard.press("Shift+ArrowRight")  # + shoes 3
            assert page.inner_text("#bench-selection") == "2 selected"
            shot(page, "21-workbench-selection")
            page.keyboard.press("2")  # the palette's second concept
            wait_until(page, "document.querySelector('#label-status').textContent.includes('Labeled 2 as shoes')")
            assert {loupe.inputs.get("pets", i).concepts[0] for i in _grid_ids(page)[1:3]} == {"shoes"}
            # n: "is not"; label the last hat photo's neighbour as not shoes, then undo it.
            page.focus("#grid figure:nth-child(1)")
            page.keyboard.press("End")
            page.keyboard.press("ArrowLeft")
            page.keyboard.press("Space")
            page.keyboard.press("n")
            assert page.get_attribute("#bench-not", "aria-pressed") == "true"
            page.keyboard.press("2")
            wait_until(page, "document.querySelector('#label-status').textContent.includes('Labeled 1 as not shoes')")
            target = _grid_ids(page)[10]
            assert loupe.inputs.get("pets", target).not_concepts == ["shoes"]
            page.focus("#grid figure:nth-child(1)")
            page.keyboard.press("u")
            wait_until(page, "document.querySelector('#label-status').textContent.includes('Undone')")
            assert loupe.inputs.get("pets", target).not_concepts == []
            page.keyboard.press("n")  # back to "is": the grid kept the keyboard focus through the reload
            assert page.get_attribute("#bench-not", "aria-pressed") == "false"
            # A model, trained; its guesses for the 8 unlabeled photos, accepted by group, one left out.
            loupe.models.create("pets", "kind", concept_ids=["hat", "shoes"], mutually_exclusive=True)
            loupe.trainer.train("pets", "kind")
            page.click("nav [data-view=overview]")
            page.click("nav [data-view=inputs]")
            wait_until(page, "document.querySelector('#review-model').options.length >= 1")
            page.select_option("#review-model", "kind")
            page.click("#review-go")
            page.wait_for_selector(".review-group")
            unlabeled = {i.id for i in loupe.inputs.list_page("pets", per_page=100) if not i.concepts}
            shown = page.locator(".review-group figure").count()
            assert shown == len(unlabeled) == 8
            group = page.locator(".review-group").first
            concept = group.get_attribute("data-concept")
            members = group.locator("figure").count()
            left_out = group.locator("figure").first.get_attribute("data-input")
            group.locator("figure").first.click()
            assert f"Accept {members - 1} as" in group.locator("button.accept").inner_text()
            shot(page, "22-review-guesses")
            group.locator("button.accept").click()
            page.wait_for_selector(f".review-group[data-concept='{concept}'] .ok")
            labeled = [i for i in loupe.inputs.list_page("pets", per_page=100) if i.id in unlabeled and i.concepts]
            assert len(labeled) == members - 1 and {i.concepts[0] for i in labeled} == {concept}
            assert loupe.inputs.get("pets", left_out).concepts == []
            # Every view at desktop and phone width: nothing runs off the side.
            for width, height, tag in ((1280, 900, "desktop"), (390, 844, "phone")):
                page.set_viewport_size({"width": width, "height": height})
                for view in ("overview", "inputs", "models", "predict", "search", "evaluate", "advice", "next", "keys", "audit"):
                    page.click(f"nav [data-view={view}]")
                    assert page.evaluate(PAGE_SCROLLS_SIDEWAYS) == 0, (tag, view, page.evaluate(WIDE_ELEMENTS))
                    shot(page, f"23-{tag}-{view}")


def _grid_ids(page) -> list[str]:
    return page.eval_on_selector_all("#grid figure[data-input]", "fs => fs.map(f => f.dataset.input)")
