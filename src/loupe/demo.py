"""The demo app `loupe serve --demo` starts with: Clothing-10 photos shipped in the package (CC0,
downscaled to 256 px), a trained 10-concept model and a key. Works from any install, offline."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import msgspec

from loupe.application import Loupe
from loupe.errors import NotFound
from loupe.intake.folder_import import import_folder
from loupe.store.records import Role

DEMO_APP = "demo"
DEMO_MODEL = "clothes"
DEMO_USER = "demo"
PER_CONCEPT = 20
# 20 training photos per class (40 hats, for the advice tests) and 10 held out per class.
DEMO_PHOTOS = Path(__file__).resolve().parent / "demo_photos" / "clothing10"


class DemoAccess(msgspec.Struct, frozen=True):
    key: str
    user: str
    password: str


def _kept(path: Path, make: Callable[[], str]) -> str:
    """A secret kept in the data dir, readable only by its owner, so restarts print the same one."""
    if path.exists():
        return path.read_text().strip()
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


def ensure_demo(loupe: Loupe, data_dir: Path, say: Callable[[str], None] = print) -> DemoAccess:
    """Create (once) the demo app from the packaged training photos with a trained model, a key for it and
    a user `demo` who owns it (random password); restarts reuse all three (kept in the data dir)."""
    key_file = data_dir / "demo-key.txt"
    try:
        loupe.apps.get(DEMO_APP)
    except NotFound:
        train = DEMO_PHOTOS / "train"
        if not train.is_dir():
            raise NotFound("demo photos", "", f"demo photos not found in {train}: reinstall loupe") from None
        folders = sorted(p for p in train.iterdir() if p.is_dir())
        say(f"creating the demo app: importing {PER_CONCEPT} photos of each of {len(folders)} concepts ...")
        loupe.apps.create(DEMO_APP)
        with tempfile.TemporaryDirectory() as tmp:  # the same number of each, for a balanced demo
            for folder in folders:
                (Path(tmp) / folder.name).mkdir()
                for image in sorted(folder.glob("*.jpg"))[:PER_CONCEPT]:
                    shutil.copy(image, Path(tmp) / folder.name / image.name)
            report = import_folder(loupe.inputs, Path(tmp), DEMO_APP)
        say(f"  {report.added} photos imported in {report.seconds:.1f} s; training model {DEMO_MODEL!r} ...")
        concepts = [c.id for c in loupe.concepts.list_page(DEMO_APP, per_page=1000)]
        loupe.models.create(DEMO_APP, DEMO_MODEL, concept_ids=concepts, mutually_exclusive=True)
        version = loupe.trainer.train(DEMO_APP, DEMO_MODEL, wait=True)
        say(f"  trained in {version.train_seconds:.2f} s")
        key_file.unlink(missing_ok=True)
    if key_file.exists() and loupe.keys.verify(key_file.read_text().strip()) is None:
        key_file.unlink()
    key = _kept(key_file, lambda: loupe.keys.create(DEMO_APP, name="demo"))
    password_file = data_dir / "demo-password.txt"
    try:
        loupe.users.get(DEMO_USER)
    except NotFound:
        password_file.unlink(missing_ok=True)
        password = _kept(password_file, lambda: secrets.token_urlsafe(12))
        loupe.users.create(DEMO_USER, password)
    if DEMO_USER not in {m.user for m in loupe.members.of_app(DEMO_APP)}:
        loupe.members.add(DEMO_APP, DEMO_USER, Role.OWNER)
    return DemoAccess(key, DEMO_USER, _kept(password_file, lambda: "(set with `loupe users set-password demo`)"))
