"""The `loupe` command."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from loupe.allocator import keep_large_buffers_returnable
from loupe.application import Loupe
from loupe.backbones.registry import BACKBONE_IDS, DEFAULT_BACKBONE
from loupe.config import config_from_env
from loupe.errors import LoupeError, NotFound


def _open(args: argparse.Namespace) -> Loupe:
    return Loupe(config_from_env(data_dir=args.data_dir, torch_threads=args.threads, runtime=args.runtime,
                                 precision=args.precision))


def cmd_import(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from loupe.folder_import import import_folder, scan_folder

    root = Path(args.folder)
    if not root.is_dir():
        raise LoupeError(f"{root} is not a folder")
    with _open(args) as loupe:
        try:
            app = loupe.get_app(args.app)
            if args.backbone and args.backbone != app.backbone:
                raise LoupeError(f"app {app.id!r} uses backbone {app.backbone}, not {args.backbone}")
        except NotFound:
            app = loupe.create_app(args.app, args.backbone or DEFAULT_BACKBONE)
            print(f"created app {app.id!r} with backbone {app.backbone}")
        total = len(scan_folder(root))
        with tqdm(total=total, unit="img", desc=f"import {app.id}", dynamic_ncols=True) as bar:
            report = import_folder(loupe, root, app.id, batch_size=args.batch_size, progress=bar.update)
        loupe.index(app)  # build (or bring up to date) and save the index now, not on first search
        loupe.indexes.save(app)
    print(f"{report.found} images found: {report.added} added, {report.skipped} already there, "
          f"{len(report.failed)} failed; {report.embedded} embedded in {report.seconds:.1f} s")
    for path, reason in report.failed[:20]:
        print(f"  failed: {path}: {reason}", file=sys.stderr)
    return 0 if not report.failed else 1


def cmd_search(args: argparse.Namespace) -> int:
    data = Path(args.image).read_bytes()
    with _open(args) as loupe:
        hits = loupe.search_by_image(args.app, data, per_page=args.k)
    for hit in hits:
        labels = ",".join(hit.input.concepts) or "-"
        print(f"{hit.score:.4f}  {hit.input.id}  [{labels}]  {hit.input.source}")
    return 0


def cmd_apps(args: argparse.Namespace) -> int:
    with _open(args) as loupe:
        if args.action == "create":
            if not args.name:
                raise LoupeError("loupe apps create needs a NAME")
            app = loupe.create_app(args.name, args.backbone)
            print(f"created app {app.id!r} with backbone {app.backbone}")
            return 0
        summaries = loupe.list_apps()
    if not summaries:
        print("no apps yet: `loupe import DIR --app NAME` creates one")
    for s in summaries:
        print(f"{s.app.id}\tbackbone={s.app.backbone}\tinputs={s.input_count}\tconcepts={s.concept_count}")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    with _open(args) as loupe:
        key = loupe.keys.create(args.app, args.scope)
    print(key)
    print(f"(a new {args.scope}-scope key for app {args.app!r}; it is shown only this once)", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from loupe.demo import ensure_demo
    from loupe.service.app import create_app
    from loupe.service.transport import protocol_with_header_timeout

    def say(text: str) -> None:
        print(text, flush=True)

    loupe = _open(args)
    data_dir = Path(loupe.config.data_dir)
    # The server owns the data dir: trains a crash cut short are failed now (other commands that open
    # the store, e.g. `loupe keys`, must not touch trains a running server is doing).
    interrupted = loupe.models.recover_interrupted()
    if interrupted:
        say(f"{interrupted} interrupted train(s)/evaluation(s) marked failed")
    say(f"loading backbone {DEFAULT_BACKBONE} ({loupe.config.runtime}; the first start in a data dir compiles it, "
        "about 5 s) ...")
    started = time.perf_counter()
    backbone = loupe.backbones.get(DEFAULT_BACKBONE)  # ready before the first request, not during it
    say(f"  ready in {time.perf_counter() - started:.1f} s ({backbone.embedder})")
    public_url = args.public_url or loupe.config.public_url or f"http://{args.host}:{args.port}"
    if args.demo:
        key = ensure_demo(loupe, data_dir / "demo-key.txt", say)
        say(f"demo app 'demo' (Clothing-10 sample, model 'clothes') - API key: {key}")
        say(f"  web page: {public_url}/ (sign in with the key)")
        say(f"  API:      curl -H 'Authorization: Key {key}' {public_url}/v2/models")
    elif not loupe.list_apps():
        dd = f" --data-dir {args.data_dir}" if args.data_dir else ""
        say("no apps yet. In another terminal, make one and a key to sign in with:")
        say(f"  loupe{dd} apps create my-app && loupe{dd} keys create --app my-app")
        say("  (or import a folder with one subfolder per concept: "
            f"loupe{dd} import PHOTOS --app my-app) - or restart with --demo for a ready-made app")
    say(f"Loupe serving on {public_url}/ (web page), {public_url}/v2 (API); Ctrl-C stops")
    try:
        uvicorn.run(create_app(loupe, max_body_bytes=args.max_body_mb * 1024 * 1024, public_url=public_url),
                    host=args.host,
                    port=args.port, log_level="warning", access_log=False,
                    http=protocol_with_header_timeout(args.header_timeout))
    finally:
        loupe.close()  # after a clean stop (SIGTERM/Ctrl-C): indexes saved, so the next start is fast
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loupe", description="Few-shot custom image concepts and visual search.")
    parser.add_argument("--data-dir",
                        help="where the store and indexes live (env LOUPE_DATA_DIR; default ./loupe-data)")
    parser.add_argument("--threads", type=int, help="threads for the network (default: all cores)")
    parser.add_argument("--runtime", choices=["openvino", "torch"],
                        help="what runs the backbone (env LOUPE_RUNTIME; default openvino, compiled once into "
                             "DATA_DIR/compiled; torch is the reference and the fallback)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                        help="network precision (env LOUPE_PRECISION; default auto: bf16 where the CPU has it)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("import", help="import a folder: one subfolder per concept")
    p.add_argument("folder")
    p.add_argument("--app", required=True)
    p.add_argument("--backbone", choices=BACKBONE_IDS, help=f"for a new app (default {DEFAULT_BACKBONE})")
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("search", help="print the inputs most similar to an image file")
    p.add_argument("image")
    p.add_argument("--app", required=True)
    p.add_argument("-k", type=int, default=10)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("apps", help="list apps, or `apps create NAME`")
    p.add_argument("action", nargs="?", choices=["list", "create"], default="list")
    p.add_argument("name", nargs="?")
    p.add_argument("--backbone", choices=BACKBONE_IDS)
    p.set_defaults(func=cmd_apps)

    p = sub.add_parser("keys", help="`keys create --app NAME [--scope all|predict]` prints a new API key once")
    p.add_argument("action", choices=["create"])
    p.add_argument("--app", required=True)
    p.add_argument("--scope", choices=["all", "predict"], default="all")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("serve", help="run the HTTP API (Clarifai v2 compatible)")
    p.add_argument("--host", default=os.environ.get("LOUPE_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("LOUPE_PORT", "8080")))
    p.add_argument("--demo", action="store_true", help="create a demo app from ../shared (once) and print its key")
    p.add_argument("--max-body-mb", type=int, default=64)
    p.add_argument("--header-timeout", type=float, default=10.0,
                   help="seconds a connection has to send a request's headers before it is closed")
    p.add_argument("--public-url", help="base URL clients reach this server at, for image URLs in answers "
                                        "(env LOUPE_PUBLIC_URL; default http://HOST:PORT)")
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("serve", "import"):
        keep_large_buffers_returnable()
    try:
        return args.func(args)
    except LoupeError as exc:
        print(f"loupe: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
