"""The `loupe` command: parser and the data commands; models and predict live in loupe.cli.models."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from loupe.allocator import keep_large_buffers_returnable
from loupe.application import Loupe
from loupe.backbones.registry import BACKBONE_IDS, DEFAULT_BACKBONE
from loupe.cli.inputs import register as register_inputs
from loupe.cli.models import register as register_models
from loupe.cli.operations import register as register_operations
from loupe.cli.output import as_json, port_number, positive_int, private_address, table, when
from loupe.config import Config, parse_hosts, resolve_config
from loupe.errors import LoupeError, NotFound
from loupe.store.records import Scope


def _config(args: argparse.Namespace) -> Config:
    hosts = getattr(args, "url_allow_hosts", None)
    return resolve_config(None, getattr(args, "config", None), data_dir=args.data_dir,
                          torch_threads=args.threads, runtime=args.runtime, precision=args.precision,
                          url_allow_hosts=parse_hosts(hosts) if hosts is not None else None).config


def _open(args: argparse.Namespace) -> Loupe:
    return Loupe(_config(args))


def _open_existing(args: argparse.Namespace) -> Loupe:
    """For commands that only read: a data dir without a store is reported, never created."""
    config = _config(args)
    if not (config.lmdb_path / "data.mdb").exists():
        raise NoStore(f"no Loupe data in {config.data_dir} (nothing to show): `loupe import DIR --app NAME` "
                      "or `loupe serve` starts one there")
    return Loupe(config)


class NoStore(LoupeError):
    """A reading command was pointed at a data dir that holds no store."""


def cmd_import(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from loupe.intake.folder_import import IMAGE_SUFFIXES, import_folder, scan_folder

    if args.csv or args.jsonl or args.coco:
        from loupe.cli.operations import import_rows

        return import_rows(_open, args)
    if not args.folder:
        raise LoupeError("give a folder to import, or --csv FILE / --jsonl FILE / --coco FILE")
    root = Path(args.folder)
    if not root.is_dir():
        raise LoupeError(f"{root} is not a folder")
    total = len(scan_folder(root))
    if not total:  # before anything opens: no app is created for nothing
        raise LoupeError(f"no images in {root} (looked for {', '.join(sorted(IMAGE_SUFFIXES))} files; photos at "
                         "its top level are imported unlabeled, in subfolders labeled by the subfolder's name)")
    with _open(args) as loupe:
        try:
            app = loupe.apps.get(args.app)
            if args.backbone and args.backbone != app.backbone:
                raise LoupeError(f"app {app.id!r} uses backbone {app.backbone}, not {args.backbone}")
        except NotFound:
            app = loupe.apps.create(args.app, args.backbone or DEFAULT_BACKBONE)
            print(f"created app {app.id!r} with backbone {app.backbone}")
        with tqdm(total=total, unit="img", desc=f"import {app.id}", dynamic_ncols=True) as bar:
            if args.ray:
                from loupe.scale.ray_import import ray_import_folder

                report = ray_import_folder(loupe, root, app.id, address=args.ray, workers=args.ray_workers,
                                           batch_size=args.batch_size, progress=bar.update)
            else:
                report = import_folder(loupe.inputs, root, app.id, batch_size=args.batch_size, progress=bar.update)
        loupe.context.index(app)  # build (or bring up to date) and save the index now, not on first search
        loupe.context.indexes.save(app)
    print(f"{report.found} images found: {report.added} added, {report.skipped} already there, "
          f"{len(report.failed)} failed; {report.embedded} embedded in {report.seconds:.1f} s")
    for path, reason in report.failed[:20]:
        print(f"  failed: {path}: {reason}", file=sys.stderr)
    return 0 if not report.failed else 1


def cmd_search(args: argparse.Namespace) -> int:
    data = _read_file(args.image)
    with _open(args) as loupe:
        hits = loupe.search.by_image(args.app, data, per_page=args.k)
    if args.json:
        as_json([{"score": round(h.score, 4), "id": h.input.id, "concepts": h.input.concepts,
                  "source": h.input.source} for h in hits])
        return 0
    table(["score", "input", "concepts", "source"],
          [[f"{h.score:.4f}", h.input.id, ",".join(h.input.concepts) or "-", h.input.source] for h in hits])
    return 0


def cmd_apps(args: argparse.Namespace) -> int:
    if args.action == "list":
        try:
            loupe = _open_existing(args)
        except NoStore:
            print(f"no apps yet (no Loupe data in {_config(args).data_dir}): `loupe import DIR --app NAME` creates one")
            return 0
    else:
        loupe = _open(args)
    with loupe:
        if args.action == "create":
            app = loupe.apps.create(args.name, args.backbone, owner=args.owner or "")
            owned = f", owned by {args.owner!r}" if args.owner else ""
            print(f"created app {app.id!r} with backbone {app.backbone}{owned}; a key for it: "
                  f"loupe keys create --app {app.id}")
            return 0
        if args.action == "delete":
            if not args.yes:
                raise LoupeError(f"deleting app {args.name!r} removes its inputs, models and keys for good: "
                                 "add --yes to go ahead")
            loupe.apps.delete(args.name)
            print(f"deleted app {args.name!r}")
            return 0
        summaries = loupe.apps.summaries()
    if args.json:
        as_json([{"id": s.app.id, "backbone": s.app.backbone, "inputs": s.input_count, "concepts": s.concept_count,
                  "embedders": s.app.embedders} for s in summaries])
    elif not summaries:
        print("no apps yet: `loupe import DIR --app NAME` creates one (or `loupe apps create NAME`)")
    else:
        table(["app", "backbone", "inputs", "concepts", "embedded by"],
              [[s.app.id, s.app.backbone, s.input_count, s.concept_count, ",".join(s.app.embedders) or "-"]
               for s in summaries])
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    with (_open_existing if args.action == "list" else _open)(args) as loupe:
        if args.action == "create" and args.user:
            token, _ = loupe.keys.create_token(args.user, name=args.name or "", scope=args.scope)
            print(token)
            print(f"(a new {args.scope}-scope token of user {args.user!r}; it is shown only this once)",
                  file=sys.stderr)
            return 0
        if args.action == "create":
            key = loupe.keys.create(args.app, args.scope, name=args.name or "")
            print(key)
            print(f"(a new {args.scope}-scope key for app {args.app!r}; it is shown only this once)", file=sys.stderr)
            return 0
        if args.action == "revoke":
            record = loupe.keys.revoke(args.app, args.key)
            print(f"revoked key {record.id} ({record.hint}...) of app {args.app!r}")
            return 0
        loupe.apps.get(args.app)
        records = loupe.keys.of_app(args.app)
    if args.json:
        as_json([{"id": r.id, "hint": r.hint, "name": r.name, "scope": r.scope.value, "created_at": r.created_at,
                  "created_by": r.created_by, "last_used_at": r.last_used_at or None} for r in records])
    else:
        table(["id", "key starts with", "name", "scope", "created", "by", "last used"],
              [[r.id, r.hint + "...", r.name or "-", r.scope.value, when(r.created_at), r.created_by or "-",
                when(r.last_used_at) if r.last_used_at else "never"] for r in records])
    return 0


def _password(args: argparse.Namespace) -> str:
    """From stdin (--password-stdin: one line, for scripts) or asked twice at the terminal; never an argument
    (arguments show in `ps` and shell history)."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise LoupeError("the two passwords differ")
    return first


def cmd_users(args: argparse.Namespace) -> int:
    with (_open_existing if args.action == "list" else _open)(args) as loupe:
        if args.action == "create":
            user = loupe.users.create(args.name, _password(args), admin=args.admin)
            print(f"created {'server admin' if user.admin else 'user'} {user.name!r}")
            return 0
        if args.action == "set-password":
            loupe.users.set_password(args.name, _password(args))
            print(f"new password for {args.name!r}; their sessions were ended")
            return 0
        if args.action == "delete":
            loupe.users.delete(args.name)
            print(f"deleted user {args.name!r} (their apps stay, with their other members)")
            return 0
        users = loupe.users.all()
    if args.json:
        as_json([{"name": u.name, "admin": u.admin, "created_at": u.created_at} for u in users])
    elif not users:
        print("no users yet: `loupe users create NAME --admin` makes the first server admin")
    else:
        table(["user", "server admin", "created"], [[u.name, "yes" if u.admin else "-", when(u.created_at)]
                                                    for u in users])
    return 0


def cmd_members(args: argparse.Namespace) -> int:
    with (_open_existing if args.action == "list" else _open)(args) as loupe:
        if args.action == "add":
            member = loupe.members.add(args.app, args.user, args.role)
            print(f"{member.user!r} is now {member.role.value} of app {args.app!r}")
            return 0
        if args.action == "remove":
            loupe.members.remove(args.app, args.user)
            print(f"{args.user!r} is no longer a member of app {args.app!r}")
            return 0
        members = loupe.members.of_app(args.app)
    if args.json:
        as_json([{"user": m.user, "role": m.role.value, "added_at": m.added_at} for m in members])
    else:
        table(["user", "role", "added", "by"], [[m.user, m.role.value, when(m.added_at), m.added_by or "-"]
                                               for m in members])
    return 0


def _read_file(name: str) -> bytes:
    path = Path(name)
    if not path.is_file():
        raise LoupeError(f"{name}: no such file")
    return path.read_bytes()


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from loupe.demo import ensure_demo
    from loupe.service.app import create_app
    from loupe.service.request_ids import configure_logging
    from loupe.service.transport import protocol_with_header_timeout

    # Workers are fresh interpreters: they read the same choice from the environment.
    os.environ["LOUPE_LOG_FORMAT"], os.environ["LOUPE_LOG_LEVEL"] = args.log_format, args.log_level
    if args.config:
        os.environ["LOUPE_CONFIG"] = str(Path(args.config).resolve())
    configure_logging(args.log_format, args.log_level)

    def say(text: str) -> None:
        print(text, flush=True)

    if args.metrics_bind:  # before any loading: else every worker would take it for another's, none serving
        _free(*args.metrics_bind)
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
    dd = f" --data-dir {args.data_dir}" if args.data_dir else ""
    if args.demo:
        demo = ensure_demo(loupe, data_dir, say)
        say(f"demo app 'demo' (Clothing-10 sample, model 'clothes') - API key: {demo.key}")
        say(f"  web page: {public_url}/ (sign in as user {demo.user!r} with password {demo.password}, or with the key)")
        say(f"  API:      curl -H 'Authorization: Key {demo.key}' {public_url}/v2/models")
    elif not loupe.users.any_admin():
        say("no server admin yet. In another terminal, create one, then sign in to the web page with it:")
        say(f"  loupe{dd} users create admin --admin")
        say("  (apps and keys can also be made here: "
            f"loupe{dd} apps create my-app && loupe{dd} keys create --app my-app) - or restart with --demo")
    if args.workers > 1:
        return _serve_workers(args, loupe, public_url, say)
    say(f"Loupe serving on {public_url}/ (web page), {public_url}/v2 (API); Ctrl-C stops")
    app = create_app(loupe, max_body_bytes=args.max_body_mb * 1024 * 1024, public_url=public_url)
    if args.metrics_bind:
        app.state.metrics.serve(*args.metrics_bind)
        say(f"  metrics (no credential): http://{args.metrics_bind[0]}:{args.metrics_bind[1]}/metrics")
    try:
        uvicorn.run(app, host=args.host,
                    port=args.port, log_level="warning", access_log=False,
                    http=protocol_with_header_timeout(args.header_timeout))
    finally:
        loupe.close()  # after a clean stop (SIGTERM/Ctrl-C): indexes saved, so the next start is fast
    return 0


def _free(host: str, port: int) -> None:
    """Refuse an address something else already listens on (said at start, not found out by a scraper)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise LoupeError(f"--metrics-bind {host}:{port}: {exc.strerror or exc}; choose another address") from None


def _serve_workers(args: argparse.Namespace, loupe: Loupe, public_url: str, say: Callable[[str], None]) -> int:
    """Hand the port to uvicorn's supervisor and N worker processes, each with its own application object."""
    import uvicorn

    from loupe.service.workers import WorkerSettings, export_settings

    config = loupe.config
    threads = args.threads or max(1, config.torch_threads // args.workers)
    export_settings(WorkerSettings(data_dir=str(Path(config.data_dir).resolve()), threads=threads,
                                   runtime=args.runtime, precision=args.precision,
                                   max_body_bytes=args.max_body_mb * 1024 * 1024, public_url=public_url,
                                   header_timeout=args.header_timeout,
                                   url_allow_hosts=list(config.url_allow_hosts),
                                   metrics_bind=list(args.metrics_bind) if args.metrics_bind else []))
    loupe.close()  # the workers open the store themselves; this process only supervises
    # Metrics shared by the workers (prometheus-client's multi-process mode): a fresh folder per start.
    metrics_dir = Path(config.data_dir) / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    say(f"Loupe serving on {public_url}/ (web page), {public_url}/v2 (API) with {args.workers} worker "
        f"processes ({threads} network thread(s) each); Ctrl-C stops")
    uvicorn.run("loupe.service.workers:worker_app", factory=True, workers=args.workers, host=args.host,
                port=args.port, log_level="warning", access_log=False,
                http="loupe.service.workers:WorkerHeaderDeadline")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loupe", description="Few-shot custom image concepts and visual search: import labeled photos, "
        "train a model in seconds, predict and search, from here or over a Clarifai-v2-compatible API.",
        epilog="Start with `loupe serve --demo`, or `loupe import PHOTOS --app NAME` (one subfolder per concept), "
               "then `loupe models create`, `loupe models train` and `loupe predict`.")
    parser.add_argument("--config", metavar="FILE",
                        help="a TOML file of settings (Config's fields; env LOUPE_CONFIG): below env and flags")
    parser.add_argument("--data-dir",
                        help="where the store and indexes live (env LOUPE_DATA_DIR; default ./loupe-data)")
    parser.add_argument("--threads", type=positive_int, help="threads for the network (default: all cores)")
    parser.add_argument("--runtime", choices=["openvino", "torch"],
                        help="what runs the backbone (env LOUPE_RUNTIME; default openvino, compiled once into "
                             "DATA_DIR/compiled; torch is the reference and the fallback)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                        help="network precision (env LOUPE_PRECISION; default auto: bf16 where the CPU has it)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("import", help="import a folder of photos: one subfolder per concept",
                       description="Import a folder tree: a photo's concept is the folder that holds it (split "
                                   "folders such as train/ and test/ are fine; photos at the top level are "
                                   "imported unlabeled). Running it again adds only what is new.")
    p.add_argument("folder", nargs="?", help="the folder to import")
    p.add_argument("--csv", metavar="FILE", help="import the rows of a CSV file instead (columns id, file, url, "
                   "concepts, not_concepts, metadata, latitude, longitude: what `loupe export --format csv` writes)")
    p.add_argument("--jsonl", metavar="FILE", help="import the rows of a JSON Lines file instead (the same "
                   "fields, one object a line)")
    p.add_argument("--coco", metavar="FILE", help="import a COCO annotations.json instead: each image (file_name "
                   "relative to the file) with its categories as concepts and its boxes as regions")
    p.add_argument("--app", required=True, help="the app to import into (created if it does not exist)")
    p.add_argument("--backbone", choices=BACKBONE_IDS, help=f"for a new app (default {DEFAULT_BACKBONE})")
    p.add_argument("--batch-size", type=positive_int, default=32, help="photos per batch (default 32)")
    p.add_argument("--ray", metavar="auto|ADDRESS",
                   help="embed on a Ray cluster: auto starts a local one, an address (host:6379) joins a running "
                        "cluster whose nodes see FOLDER at the same path; this process stays the only writer")
    p.add_argument("--ray-workers", type=positive_int, metavar="N",
                   help="embedding actors on the cluster (default: one per 2 of its CPUs)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("search", help="the inputs most similar to an image file",
                       description="Visual search: the app's inputs most similar to an image, best first.")
    p.add_argument("image", help="an image file")
    p.add_argument("--app", required=True, help="the app to search")
    p.add_argument("-k", type=positive_int, default=10, help="how many results (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_search)

    apps = sub.add_parser("apps", help="list, create or delete apps", description="Apps: list (default), "
                          "create NAME [--backbone ID], delete NAME --yes.")
    apps.set_defaults(func=cmd_apps, action="list", json=False)
    apps_sub = apps.add_subparsers(dest="action", metavar="ACTION")
    p = apps_sub.add_parser("list", help="the apps with their backbone and counts", description="List apps.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p = apps_sub.add_parser("create", help="create an empty app", description="Create an empty app.")
    p.add_argument("name", help="the new app's id")
    p.add_argument("--owner", help="a user who becomes the app's first owner")
    p.add_argument("--backbone", choices=BACKBONE_IDS, help=f"what embeds its images (default {DEFAULT_BACKBONE})")
    p = apps_sub.add_parser("delete", help="delete an app with everything in it",
                            description="Delete an app: its inputs, concepts, models, versions, feedback, keys.")
    p.add_argument("name", help="the app to delete")
    p.add_argument("--yes", action="store_true", help="confirm: the app cannot be brought back")

    keys = sub.add_parser("keys", help="create, list or revoke API keys",
                          description="API keys of an app: create prints a new key once (stored hashed); list "
                                      "shows each key's first characters; revoke takes the key or those characters.")
    keys.set_defaults(func=cmd_keys)
    keys_sub = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = keys_sub.add_parser("create", help="a new key, printed once",
                            description="Create a key for an app, or (--user) a personal access token.")
    whose = p.add_mutually_exclusive_group(required=True)
    whose.add_argument("--app", help="the app the key opens")
    whose.add_argument("--user", help="a personal access token of this user instead: acts as the user (scope all) "
                                      "or, with --scope metrics, reads only /metrics (a Prometheus credential)")
    p.add_argument("--scope", choices=[s.value for s in Scope], default="all",
                   help="an app key: all (as an admin of the app), label (as a labeler: add and label, no deletes) "
                        "or predict (read, predict and search only); a token: all or metrics")
    p.add_argument("--name", help="what the key is for, shown in listings")
    p = keys_sub.add_parser("list", help="the app's keys (first characters, scope, created)",
                            description="List an app's keys.")
    p.add_argument("--app", required=True, help="the app whose keys to list")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p = keys_sub.add_parser("revoke", help="revoke a key", description="Revoke a key: it stops working at once.")
    p.add_argument("key", help="the key's id, the key, or its first characters as `keys list` shows them")
    p.add_argument("--app", required=True, help="the app the key belongs to")

    users = sub.add_parser("users", help="create, list or delete users; set passwords",
                           description="Users sign in to the web page and act in the apps they are members of "
                                       "(a server admin: in every app). Passwords are read from the terminal or, "
                                       "with --password-stdin, one line of stdin; stored as argon2id hashes.")
    users.set_defaults(func=cmd_users)
    users_sub = users.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = users_sub.add_parser("create", help="a new user", description="Create a user.")
    p.add_argument("name", help="the user name (signs in with it)")
    p.add_argument("--admin", action="store_true", help="a server admin: sees and manages every app")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p = users_sub.add_parser("list", help="the users", description="List users.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p = users_sub.add_parser("set-password", help="a new password (ends the user's sessions)",
                             description="Set a user's password.")
    p.add_argument("name", help="the user")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p = users_sub.add_parser("delete", help="delete a user with their memberships, sessions and tokens",
                             description="Delete a user.")
    p.add_argument("name", help="the user")

    members = sub.add_parser("members", help="who may use an app, with which role",
                             description="Members of an app: owner (everything), admin (models, keys, deletes), "
                                         "labeler (add, label, train), viewer (read, predict, search).")
    members.set_defaults(func=cmd_members)
    members_sub = members.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = members_sub.add_parser("add", help="add a member, or change a member's role", description="Add a member.")
    p.add_argument("user", help="an existing user (`loupe users create`)")
    p.add_argument("--app", required=True, help="the app")
    p.add_argument("--role", required=True, choices=["owner", "admin", "labeler", "viewer"],
                   help="what they may do in the app")
    p = members_sub.add_parser("list", help="the app's members", description="List an app's members.")
    p.add_argument("--app", required=True, help="the app")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p = members_sub.add_parser("remove", help="remove a member", description="Remove a member from an app.")
    p.add_argument("user", help="the member to remove")
    p.add_argument("--app", required=True, help="the app")

    register_models(sub, _open)
    register_inputs(sub, _open, _open_existing)
    register_operations(sub, _open)

    p = sub.add_parser("serve", help="run the HTTP API (Clarifai v2 compatible) and the web page",
                       description="Serve the API and the web page; --demo adds a ready-made app on first start.")
    p.add_argument("--host", default=os.environ.get("LOUPE_HOST", "127.0.0.1"),
                   help="address to bind (env LOUPE_HOST; default 127.0.0.1)")
    p.add_argument("--port", type=port_number, default=os.environ.get("LOUPE_PORT", "8080"),
                   help="port (env LOUPE_PORT; default 8080)")
    p.add_argument("--demo", action="store_true",
                   help="create (once) a demo app from the packaged Clothing-10 photos, with a trained model, and "
                        "print its key")
    p.add_argument("--max-body-mb", type=positive_int, default=64, help="largest request body in MB (default 64)")
    p.add_argument("--header-timeout", type=float, default=10.0,
                   help="seconds a connection has to send a request's headers before it is closed")
    p.add_argument("--public-url", help="base URL clients reach this server at, for image URLs in answers "
                                        "(env LOUPE_PUBLIC_URL; default http://HOST:PORT)")
    p.add_argument("--url-allow-hosts", metavar="HOST[,HOST...]",
                   help="hosts whose URL inputs may resolve to private or loopback addresses, e.g. an intranet "
                        "image server (env LOUPE_URL_ALLOW_HOSTS; default none). Every other limit still applies")
    p.add_argument("--metrics-bind", type=private_address, metavar="HOST:PORT",
                   help="also serve /metrics without a credential on this loopback or private address, for a "
                        "Prometheus scraper (on the API port /metrics needs a server admin's token)")
    p.add_argument("--workers", type=positive_int, default=int(os.environ.get("LOUPE_WORKERS", "1")),
                   help="server processes over the one data dir, so predictions and searches use every core "
                        "(env LOUPE_WORKERS; default 1)")
    p.add_argument("--log-format", choices=["text", "json"], default=os.environ.get("LOUPE_LOG_FORMAT", "text"),
                   help="log lines as text or one JSON object each, with the request id (env LOUPE_LOG_FORMAT)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                   default=os.environ.get("LOUPE_LOG_LEVEL", "info"),
                   help="info logs one access line per request (env LOUPE_LOG_LEVEL; default info)")
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
    except OSError as exc:  # unreadable files, full disks: a message, not a traceback
        print(f"loupe: {exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
