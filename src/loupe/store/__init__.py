"""The LMDB store: Loupe's source of truth. `Store.read()` / `Store.write()` give typed transactions."""

from loupe.store.lmdb_store import ReadTxn, Store, WriteTxn

__all__ = ["ReadTxn", "Store", "WriteTxn"]
