"""`loupe backup` and `loupe restore`: an online, consistent copy of the store and its verified restore
(loupe.store.backup). Neither opens the application: `backup` reads the live store beside a running
`loupe serve`, `restore` writes a new data dir that `loupe serve --data-dir` then opens. And `loupe
config show`: every setting's effective value and where it came from."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import msgspec

from loupe.application import Loupe
from loupe.backbones.registry import DEFAULT_BACKBONE
from loupe.config import Config, resolve_config
from loupe.errors import LoupeError, NotFound
from loupe.intake.bulk import Format, export, read_rows
from loupe.intake.bulk import import_rows as import_rows_into
from loupe.store.backup import Manifest, backup, restore


def register(sub: argparse._SubParsersAction, open_loupe: Callable[[argparse.Namespace], Loupe]) -> None:
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
    p = sub.add_parser("export", help="an app's images and labels as a folder, CSV, JSON Lines or COCO",
                       description="Write every input of the app (its image, concepts and not-concepts, "
                                   "metadata, geo, id, source URL) into a new folder DEST.")
    p.add_argument("dest", help="a new (or empty) folder")
    p.add_argument("--app", required=True, help="the app to export")
    p.add_argument("--format", choices=[f.value for f in Format], default="jsonl",
                   help="folder: a subfolder per concept (plus labels.jsonl); csv: inputs.csv; jsonl: "
                        "inputs.jsonl; coco: annotations.json (images under images/ for the last three)")
    p.set_defaults(func=lambda args: cmd_export(open_loupe, args))
    config = sub.add_parser("config", help="show the effective settings and where each came from",
                            description="Settings come from defaults, the --config TOML file, LOUPE_* "
                                        "variables and flags, each over the one before.")
    config_sub = config.add_subparsers(dest="action", required=True)
    p = config_sub.add_parser("show", help="every setting: value and source (default, file, env, flag)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_config_show)


def cmd_export(open_loupe: Callable[[argparse.Namespace], Loupe], args: argparse.Namespace) -> int:
    with open_loupe(args) as loupe:
        report = export(loupe.inputs, args.app, Path(args.dest), Format(args.format))
    print(f"exported {report.inputs} input(s) of {args.app!r} to {report.dest} ({args.format})")
    return 0


def import_rows(open_loupe: Callable[[argparse.Namespace], Loupe], args: argparse.Namespace) -> int:
    """`loupe import --csv|--jsonl|--coco FILE --app A`: every row checked before anything is written."""
    path = Path(args.csv or args.jsonl or args.coco)
    if args.coco and path.suffix.lower() != ".json":
        raise LoupeError(f"{path}: a COCO annotations file ends in .json")
    if not path.is_file():
        raise LoupeError(f"{path}: no such file")
    rows = read_rows(path)  # bad rows: InvalidArgument naming their lines, before the store opens
    with open_loupe(args) as loupe:
        try:
            loupe.apps.get(args.app)
        except NotFound:
            loupe.apps.create(args.app, args.backbone or DEFAULT_BACKBONE)
            print(f"created app {args.app!r}")
        report = import_rows_into(loupe.inputs, args.app, path, loupe.urls.fetch, rows)
    print(f"{report.rows} row(s): {report.added} added, {report.skipped} already there")
    return 0


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
