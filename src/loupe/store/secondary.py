"""The secondary indexes an input has in LMDB (labels, geo point, source URL), as key -> value entries per
database: written and deleted with the input in the same transaction."""

from __future__ import annotations

import hashlib

from loupe.store import geo
from loupe.store import keys as K
from loupe.store.records import Input


def url_key(url: str) -> bytes:
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).digest()[:16]


def index_entries(app_id: str, record: Input) -> dict[str, dict[bytes, bytes]]:
    """The secondary-index entries an input has: labels, geo point, source URL."""
    seq = K.seq_bytes(record.seq)
    labels = {K.join(app_id, c, K.POSITIVE, seq): b"" for c in record.concepts}
    labels.update({K.join(app_id, c, K.NEGATIVE, seq): b"" for c in record.not_concepts})
    points = ({K.prefix(app_id) + geo.index_key(record.geo) + seq: geo.pack_point(record.geo)}
              if record.geo is not None else {})
    sources = ({K.prefix(app_id, url_key(record.source)) + seq: b""}
               if record.source.startswith(("http://", "https://")) else {})
    return {"labels": labels, "geo": points, "sources": sources}
