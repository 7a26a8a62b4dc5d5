"""`loupe import --ray`: the folder import with its embedding on a Ray cluster.

The driver (this process) scans the folder, hashes each new file and skips content the store has
already embedded, so only new pixels are shipped. A Ray Data pipeline decodes and embeds the rest on
an actor pool (each actor holds the compiled backbone), and the results stream back here, to the one
LMDB writer, one transaction per batch. An interrupted import resumes: stored inputs are skipped by id.

Workers read the files by path, as Ray's own `read_*` functions do: on a cluster the folder must be
reachable at the same path on every node (shared storage).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from loupe.application import Loupe
from loupe.errors import Conflict, ImageError, InvalidArgument
from loupe.intake.folder_import import FolderImage, ImportReport, add_read, read_batch, scan_folder
from loupe.intake.image_pipeline import Embedded
from loupe.intake.imaging import DecodedImage, content_hash
from loupe.intake.inputs import NewInput, Presence
from loupe.scale.ray_embed import EmbedActor, EmbedSettings
from loupe.store.records import CLI, App


@contextlib.contextmanager
def ray_cluster(address: str) -> Iterator[Any]:
    """`auto`: a local Ray instance for this import (or the one this process already runs);
    anything else: the address of a running cluster to join (`ray start --head` prints it)."""
    try:
        import ray
    except ImportError:
        raise InvalidArgument("--ray needs Ray: pip install -e '.[ray]' in the Loupe checkout") from None
    if ray.is_initialized():
        yield ray
        return
    # "local": a new instance even when a `ray start` cluster (or a stale record of one) is on this machine.
    ray.init(address="local" if address == "auto" else address, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)
    try:
        yield ray
    finally:
        ray.shutdown()


def actor_cpus(cluster_cpus: float, workers: int) -> float:
    """Each actor's CPU share. Actors that took whole CPUs would starve Ray Data's own read tasks
    (on 2 CPUs the pipeline then hangs forever), so half a CPU is always left over."""
    return max(0.5, cluster_cpus / workers - 0.5)


def ray_import_folder(loupe: Loupe, root: Path, app_id: str, *, address: str = "auto", workers: int | None = None,
                      batch_size: int = 32, progress: Callable[[int], None] | None = None) -> ImportReport:
    started = time.perf_counter()
    files = scan_folder(root)
    report = ImportReport(found=len(files))
    app = loupe.apps.get(app_id)
    tick = progress or (lambda n: None)
    ship, reuse, copies = _triage(loupe, app, files, report, tick)
    # Content already embedded (another app, an earlier import under other names): no network needed.
    _add_stored(loupe, app_id, root, reuse, batch_size, report, tick)
    if ship:
        with ray_cluster(address) as ray:
            from ray.data import ActorPoolStrategy, DataContext

            DataContext.get_current().enable_progress_bars = False  # the caller's bar shows progress
            cluster_cpus = float(ray.cluster_resources().get("CPU", 1))
            workers = workers or max(1, int(cluster_cpus // 2))
            cpus = actor_cpus(cluster_cpus, workers)
            settings = EmbedSettings(app.backbone, loupe.config.runtime, loupe.config.precision,
                                     max(1, round(cpus)), str(Path(loupe.config.data_dir).resolve()),
                                     loupe.config.images)
            rows = [{"row": i, "path": str(item.path.resolve()), "sha256": sha} for i, (item, sha) in enumerate(ship)]
            dataset = ray.data.from_items(rows).map_batches(
                EmbedActor, fn_constructor_args=(settings,), batch_size=batch_size, batch_format="numpy",
                compute=ActorPoolStrategy(size=workers), num_cpus=cpus)
            for out in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                _store(loupe, app_id, root, ship, out, report)
                tick(len(out["row"]))
    # Copies of shipped files, now that the original's vector is stored.
    _add_stored(loupe, app_id, root, copies, batch_size, report, tick)
    report.seconds = time.perf_counter() - started
    return report


def _add_stored(loupe: Loupe, app_id: str, root: Path, items: list[FolderImage], batch_size: int,
                report: ImportReport, tick: Callable[[int], None]) -> None:
    """Files whose content has a stored vector, through the plain import's own steps (nothing embedded)."""
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        add_read(loupe.inputs, app_id, read_batch(loupe.inputs, app_id, root, chunk), report)
        tick(len(chunk))


def _triage(loupe: Loupe, app: App, files: list[FolderImage], report: ImportReport, tick: Callable[[int], None],
            ) -> tuple[list[tuple[FolderImage, str]], list[FolderImage], list[FolderImage]]:
    """Split the folder into what is stored already (skipped), what has a stored vector for its content
    (`reuse`), what must be embedded (`ship`, with its content hash) and copies of shipped files."""
    def look(item: FolderImage) -> tuple[Presence, str]:
        sha = content_hash(item.path.read_bytes())
        return loupe.inputs.presence(app.id, item.input_id, sha, vectors=True), sha

    ship: list[tuple[FolderImage, str]] = []
    reuse: list[FolderImage] = []
    copies: list[FolderImage] = []
    shipped: set[str] = set()
    with ThreadPoolExecutor(min(8, (os.cpu_count() or 1) * 2), thread_name_prefix="loupe-hash") as pool:
        for item, (status, sha) in zip(files, pool.map(look, files)):
            if status is Presence.SAME:
                report.skipped += 1
                tick(1)
            elif status is Presence.CHANGED:
                report.failed.append((str(item.path), "already imported with different content"))
                tick(1)
            elif status is Presence.REUSE:
                reuse.append(item)
            elif sha in shipped:
                copies.append(item)
            else:
                shipped.add(sha)
                ship.append((item, sha))
    return ship, reuse, copies


def _store(loupe: Loupe, app_id: str, root: Path, ship: list[tuple[FolderImage, str]], out: dict[str, np.ndarray],
           report: ImportReport) -> None:
    """One batch back from the actors: one transaction, unless some input in it is refused."""
    items, decoded, vectors, norms, thumbs = [], [], [], [], {}
    for row, vector, norm, size, small, error in zip(out["row"], out["vector"], out["norm"], out["size"],
                                                     out["thumbnail"], out["error"]):
        item, sha = ship[int(row)]
        if error:
            report.failed.append((str(item.path.relative_to(root)), str(error)))
            continue
        try:
            data = item.path.read_bytes()
        except OSError as exc:
            report.failed.append((str(item.path.relative_to(root)), exc.strerror or str(exc)))
            continue
        items.append(NewInput(image=data, id=item.input_id, source=str(item.path.relative_to(root)),
                              concepts=[item.concept] if item.concept else []))
        decoded.append(DecodedImage(image=None, sha256=sha, format="", width=int(size[0]), height=int(size[1])))
        vectors.append(vector)
        norms.append(float(norm))
        if small:
            thumbs[sha] = bytes(small)
    if items:
        embedder = str(out["embedder"][0])
        _add_embedded(loupe, app_id, items, decoded, np.asarray(vectors, np.float32), norms, embedder, thumbs, report)


def _add_embedded(loupe: Loupe, app_id: str, items: list[NewInput], decoded: list[DecodedImage], vectors: np.ndarray,
                  norms: list[float], embedder: str, thumbs: dict[str, bytes], report: ImportReport) -> None:
    embedded = Embedded(vectors=vectors, norms=np.asarray(norms, np.float32),
                        new={d.sha256: v for d, v in zip(decoded, vectors)},
                        new_norms={d.sha256: n for d, n in zip(decoded, norms)}, embedder=embedder)
    try:
        added = loupe.inputs.add_embedded(app_id, items, decoded, embedded, thumbs, by=CLI)
    except (ImageError, Conflict) as exc:
        if len(items) == 1:
            report.failed.append((items[0].source, exc.plain))
            return
        for i in range(len(items)):  # find the refused one, keep the rest
            _add_embedded(loupe, app_id, items[i:i + 1], decoded[i:i + 1], vectors[i:i + 1], norms[i:i + 1],
                          embedder, thumbs, report)
        return
    report.added += len(added.inputs)
    report.embedded += len(added.inputs)
