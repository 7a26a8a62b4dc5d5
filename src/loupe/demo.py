"""The demo app `loupe serve --demo` starts with: Clothing-10 photos shipped in the package (CC0,
downscaled to 256 px), a trained 10-concept model and a key. Works from any install, offline."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from loupe.application import Loupe
from loupe.errors import NotFound
from loupe.intake.folder_import import import_folder

DEMO_APP = "demo"
DEMO_MODEL = "clothes"
PER_CONCEPT = 20
# 20 training photos per class (40 hats, for the advice tests) and 10 held out per class.
DEMO_PHOTOS = Path(__file__).resolve().parent / "demo_photos" / "clothing10"


def ensure_demo(loupe: Loupe, key_file: Path, say: Callable[[str], None] = print) -> str:
    """Create (once) the demo app from the packaged training photos with a trained model; return its
    API key (kept in `key_file`, readable only by the owner, so restarts reuse it)."""
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
    if key_file.exists():
        key = key_file.read_text().strip()
        if loupe.keys.verify(key) is not None:
            return key
    key = loupe.keys.create(DEMO_APP)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    return key
