"""What the custom models need of an app's data, and nothing more: a narrow interface that the
application object satisfies, so `custom_models` does not depend on (or import) `application`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from loupe.backbones.base import Backbone
from loupe.config import Config
from loupe.indexes import VectorIndex
from loupe.label_mirror import LabelMirror
from loupe.store import Store, WriteTxn
from loupe.store.records import App, Input


class AppData(Protocol):
    config: Config
    store: Store
    labels: LabelMirror

    def get_app(self, app_id: str) -> App: ...

    def get_input(self, app_id: str, input_id: str) -> Input: ...

    def backbone(self, app: App) -> Backbone: ...

    def index(self, app: App) -> VectorIndex: ...

    def embeddings_of(self, app: App, seqs: np.ndarray) -> np.ndarray: ...

    def image_vectors(self, app: App, images: list[bytes]) -> np.ndarray: ...

    def item_vectors(self, app: App, items: Sequence[str | bytes]) -> tuple[np.ndarray, np.ndarray]: ...

    def ensure_concepts(self, tx: WriteTxn, app_id: str, concept_ids: list[str], now: float) -> None: ...
