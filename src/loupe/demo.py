"""The demo app `loupe serve --demo` starts with: Clothing-10 photos from ../shared, a trained model, a key."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from loupe.application import Loupe
from loupe.errors import NotFound
from loupe.folder_import import import_folder

DEMO_APP = "demo"
DEMO_MODEL = "clothes"
PER_CLASS = 20


def find_demo_photos(start: Path) -> Path | None:
    """Clothing-10's training folder in a `shared/datasets` next to the checkout (or the working dir)."""
    for base in (start, *start.parents):
        candidate = base / "shared" / "datasets" / "clothing10" / "train"
        if candidate.is_dir():
            return candidate
    return None


def ensure_demo(loupe: Loupe, photos: Path | None, key_file: Path) -> str:
    """Create (once) the demo app with PER_CLASS labeled photos per class and a trained model;
    return its API key (kept in `key_file`, readable only by the owner, so restarts reuse it)."""
    try:
        loupe.get_app(DEMO_APP)
    except NotFound:
        if photos is None:
            raise NotFound("demo photos", "",
                           "demo photos not found: run from a checkout with ../shared/datasets beside it") from None
        loupe.create_app(DEMO_APP)
        with tempfile.TemporaryDirectory() as tmp:
            for folder in sorted(p for p in photos.iterdir() if p.is_dir()):
                target = Path(tmp) / folder.name
                target.mkdir()
                for image in sorted(folder.glob("*.jpg"))[:PER_CLASS]:
                    shutil.copy(image, target / image.name)
            import_folder(loupe, Path(tmp), DEMO_APP)
        concepts = [c.id for c in loupe.list_concepts(DEMO_APP, per_page=1000)]
        loupe.models.create(DEMO_APP, DEMO_MODEL, concept_ids=concepts, mutually_exclusive=True,
                            closed_environment=True)
        loupe.models.train(DEMO_APP, DEMO_MODEL, wait=True)
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
