"""The shared datasets, embedded once through Loupe itself and cached in a Loupe data dir.

The first call imports a dataset with the same folder import users run (`loupe import`), so
later benchmark runs read every vector straight from LMDB.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
from common import DATASETS, HERE

from loupe.application import Loupe
from loupe.config import Config
from loupe.errors import NotFound
from loupe.intake.folder_import import import_folder


def cache_dir(runtime: str = "openvino", precision: str = "auto") -> Path:
    """One Loupe data dir per runtime/precision, so their vectors can be compared."""
    return HERE / ".cache" / f"loupe-data-{runtime}-{precision}"


CACHE_DIR = cache_dir()  # the product's default runtime


class Embedded(msgspec.Struct):
    x: np.ndarray  # float32 [n, d]
    label: np.ndarray  # int64 [n]: index into classes
    split: np.ndarray  # str [n]: first folder of the source path for split datasets ("train", ...)
    classes: list[str]
    input_ids: list[str]


def embedded(dataset: str, backbone: str = "effnet-lite2", data_dir: Path = CACHE_DIR, *,
             runtime: str = "openvino", precision: str = "auto") -> Embedded:
    app_id = f"{dataset}-{backbone}"
    with Loupe(Config(data_dir=data_dir, runtime=runtime, precision=precision)) as loupe:
        try:
            loupe.apps.get(app_id)
        except NotFound:
            loupe.apps.create(app_id, backbone)
        report = import_folder(loupe.inputs, DATASETS / dataset, app_id)
        if report.added:
            print(f"embedded {report.embedded} images of {dataset} with {backbone} in {report.seconds:.0f} s")
        rows = []
        with loupe.store.read() as tx:
            for record in tx.iter_inputs(app_id, newest_first=False):
                vector = tx.get_embedding(backbone, record.sha256)
                rows.append((record.id, record.concepts[0], Path(record.source).parts[0], vector))
    classes = sorted({r[1] for r in rows})
    index = {c: i for i, c in enumerate(classes)}
    return Embedded(x=np.stack([r[3] for r in rows]).astype(np.float32),
                    label=np.asarray([index[r[1]] for r in rows], np.int64),
                    split=np.asarray([r[2] for r in rows]), classes=classes, input_ids=[r[0] for r in rows])
