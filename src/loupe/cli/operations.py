"""`loupe backup` and `loupe restore`: an online, consistent copy of the store and its verified restore
(loupe.store.backup). Neither opens the application: `backup` reads the live store beside a running
`loupe serve`, `restore` writes a new data dir that `loupe serve --data-dir` then opens. And `loupe
config show`: every setting's effective value and where it came from."""

from __future__ import annotations

import argparse
from pathlib import Path

import msgspec

from loupe.config import Config, resolve_config
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
    config = sub.add_parser("config", help="show the effective settings and where each came from",
                            description="Settings come from defaults, the --config TOML file, LOUPE_* "
                                        "variables and flags, each over the one before.")
    config_sub = config.add_subparsers(dest="action", required=True)
    p = config_sub.add_parser("show", help="every setting: value and source (default, file, env, flag)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_config_show)


def _config(args: argparse.Namespace) -> Config:
    return resolve_config(None, args.config, data_dir=args.data_dir).config


def cmd_config_show(args: argparse.Namespace) -> int:
    settings = resolve_config(None, args.config, data_dir=args.data_dir, runtime=args.runtime,
                              precision=args.precision, torch_threads=args.threads).settings
    if args.json:
        print(msgspec.json.encode([{"setting": s.path, "value": s.value, "source": s.source}
                                   for s in settings], enc_hook=str).decode())
        return 0
    width = max(len(s.path) for s in settings)
    for s in settings:
        print(f"{s.path:<{width}}  {s.source:<7}  {s.value!r}")
    return 0


def _say(what: str, manifest: Manifest) -> None:
    inputs = sum(a.inputs for a in manifest.apps)
    print(f"{what}: {len(manifest.apps)} app(s), {inputs} input(s), {sum(a.versions for a in manifest.apps)} "
          f"model version(s), {manifest.users} user(s), {manifest.keys} key(s); {manifest.bytes / 2**20:.1f} MB, "
          f"sha256 {manifest.sha256[:16]}…")


def cmd_backup(args: argparse.Namespace) -> int:
    config = _config(args)
    _say(f"backed up {config.data_dir} to {args.dest}", backup(config.lmdb_path, Path(args.dest), config.lmdb_map_size))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    config = _config(args)
    manifest = restore(Path(args.src), config.lmdb_path, config.lmdb_map_size)
    _say(f"restored {args.src} into {config.data_dir}", manifest)
    print(f"start it with: loupe serve --data-dir {config.data_dir} (indexes and compiled models rebuild on first use)")
    return 0
