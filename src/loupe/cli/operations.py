"""`loupe backup` and `loupe restore`: an online, consistent copy of the store and its verified restore
(loupe.store.backup). Neither opens the application: `backup` reads the live store beside a running
`loupe serve`, `restore` writes a new data dir that `loupe serve --data-dir` then opens."""

from __future__ import annotations

import argparse
from pathlib import Path

from loupe.config import config_from_env
from loupe.store.backup import Manifest, backup, restore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backup", help="copy the store (consistent, compacted) while the server runs",
                       description="Back up the store of --data-dir into DEST: LMDB's own consistent copy, "
                                   "compacted, with manifest.json (SHA-256, counts, versions). Safe while "
                                   "`loupe serve` writes. Indexes and compiled models are left out: they rebuild.")
    p.add_argument("dest", help="a new (or empty) folder")
    p.set_defaults(func=cmd_backup)
    p = sub.add_parser("restore", help="restore a backup into a new data dir (checked first)",
                       description="Check SRC against its manifest (size, SHA-256, schema), then make it the "
                                   "store of --data-dir, which must not hold one yet.")
    p.add_argument("src", help="a folder written by `loupe backup`")
    p.set_defaults(func=cmd_restore)


def _say(what: str, manifest: Manifest) -> None:
    inputs = sum(a.inputs for a in manifest.apps)
    print(f"{what}: {len(manifest.apps)} app(s), {inputs} input(s), {sum(a.versions for a in manifest.apps)} "
          f"model version(s), {manifest.users} user(s), {manifest.keys} key(s); {manifest.bytes / 2**20:.1f} MB, "
          f"sha256 {manifest.sha256[:16]}…")


def cmd_backup(args: argparse.Namespace) -> int:
    config = config_from_env(data_dir=args.data_dir)
    _say(f"backed up {config.data_dir} to {args.dest}", backup(config.lmdb_path, Path(args.dest), config.lmdb_map_size))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    config = config_from_env(data_dir=args.data_dir)
    manifest = restore(Path(args.src), config.lmdb_path, config.lmdb_map_size)
    _say(f"restored {args.src} into {config.data_dir}", manifest)
    print(f"start it with: loupe serve --data-dir {config.data_dir} (indexes and compiled models rebuild on first use)")
    return 0
