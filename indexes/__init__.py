"""Vector indexes: add/remove/search by int64 id, save/load. Knows nothing of apps or concepts."""

from loupe.indexes.base import SearchHits, VectorIndex
from loupe.indexes.factory import build_index, load_index

__all__ = ["SearchHits", "VectorIndex", "build_index", "load_index"]
