"""Import a folder tree of labeled images: one subfolder per concept, split folders (train/...) allowed."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec

from loupe.errors import Conflict, ImageError
from loupe.ids import MAX_ID_LENGTH
from loupe.intake.imaging import content_hash
from loupe.intake.inputs import Inputs, NewInput, PreparedInputs, Presence
from loupe.store.records import CLI, Actor

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


class FolderImage(msgspec.Struct, frozen=True):
    path: Path
    input_id: str
    concept: str | None  # the folder holding the file; None for files directly in the root


class ImportReport(msgspec.Struct):
    found: int = 0
    added: int = 0
    skipped: int = 0  # already imported with the same content
    embedded: int = 0  # images that went through the backbone (the rest reused stored vectors)
    failed: list[tuple[str, str]] = []
    seconds: float = 0.0


def scan_folder(root: Path) -> list[FolderImage]:
    """Every image file below `root`, sorted; its concept is the name of the folder that holds it."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        rel = path.relative_to(root)
        concept = path.parent.name if path.parent != root else None
        found.append(FolderImage(path, input_id_for(rel), concept))
    return found


def input_id_for(rel: Path) -> str:
    """Stable id from the relative path, so a second import recognises what it already stored."""
    input_id = ":".join(rel.parts)
    try:
        fits = len(input_id.encode("utf-8")) <= MAX_ID_LENGTH and input_id.isprintable()
    except UnicodeEncodeError:  # a file name that is not UTF-8
        fits = False
    if not fits:
        input_id = "file:" + hashlib.sha256(str(rel).encode()).hexdigest()[:40]
    return input_id


def import_folder(inputs: Inputs, root: Path, app_id: str, *, batch_size: int = 32,
                  progress: Callable[[int], None] | None = None, by: Actor = CLI) -> ImportReport:
    """Add what is new, skip what is there. `progress(n)` is called as files are handled; the audit
    trail records the inputs as added `by` that actor."""
    started = time.perf_counter()
    files = scan_folder(root)
    report = ImportReport(found=len(files))
    batches = [files[start:start + batch_size] for start in range(0, len(files), batch_size)]
    # Two stages: a worker reads, checks, decodes and preprocesses batch i+1 while this thread embeds
    # and stores batch i, so the network never waits for Pillow (and the disk) between batches.
    with ThreadPoolExecutor(1, thread_name_prefix="loupe-import") as ahead:
        upcoming = ahead.submit(read_batch, inputs, app_id, root, batches[0]) if batches else None
        for i, batch in enumerate(batches):
            assert upcoming is not None
            read = upcoming.result()
            upcoming = ahead.submit(read_batch, inputs, app_id, root, batches[i + 1]) if i + 1 < len(batches) else None
            add_read(inputs, app_id, read, report, by)
            if progress:
                progress(len(batch))
    report.seconds = time.perf_counter() - started
    return report


class ReadBatch(msgspec.Struct):
    new: list[NewInput]
    prepared: PreparedInputs | None  # None: some image of the batch is bad (found one by one later)
    skipped: int = 0
    failed: list[tuple[str, str]] = []


def read_batch(inputs: Inputs, app_id: str, root: Path, batch: list[FolderImage]) -> ReadBatch:
    new: list[NewInput] = []
    skipped, failed = 0, []
    for item in batch:
        data = item.path.read_bytes()
        status = inputs.presence(app_id, item.input_id, content_hash(data))
        if status is Presence.SAME:
            skipped += 1
        elif status is Presence.CHANGED:
            failed.append((str(item.path), "already imported with different content"))
        else:
            new.append(NewInput(image=data, id=item.input_id, source=str(item.path.relative_to(root)),
                                concepts=[item.concept] if item.concept else []))
    prepared = None
    if new:
        try:
            prepared = inputs.prepare(app_id, new)
        except (ImageError, Conflict):
            pass
    return ReadBatch(new, prepared, skipped, failed)


def add_read(inputs: Inputs, app_id: str, read: ReadBatch, report: ImportReport, by: Actor = CLI) -> None:
    report.skipped += read.skipped
    report.failed += read.failed
    if read.prepared is not None:
        try:
            added = inputs.add_prepared(read.prepared, by=by)
        except Conflict:
            _add_items(inputs, app_id, read.new, report, by)
            return
        report.added += len(added.inputs)
        report.embedded += added.embedded
    elif read.new:
        _add_items(inputs, app_id, read.new, report, by)


def _add_items(inputs: Inputs, app_id: str, items: list[NewInput], report: ImportReport, by: Actor) -> None:
    if not items:
        return
    try:
        added = inputs.add(app_id, items, by=by)
    except (ImageError, Conflict) as exc:
        if len(items) == 1:
            # The report names the file itself: the message without "input 0 (id): ".
            report.failed.append((items[0].source, exc.plain))
            return
        # A batch is all or nothing: find the bad files one by one and keep the good ones.
        for item in items:
            _add_items(inputs, app_id, [item], report, by)
        return
    report.added += len(added.inputs)
    report.embedded += added.embedded
