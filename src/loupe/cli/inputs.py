"""`loupe inputs list|label|unlabel|delete`: label from a terminal, by id, by image file, by pattern or
from a CSV (columns `input`, and optionally `concept` and `value`)."""

from __future__ import annotations

import argparse
import csv
from collections.abc import Callable
from pathlib import Path

from loupe.application import Loupe
from loupe.cli.output import as_json, positive_int, table, when
from loupe.errors import LoupeError
from loupe.intake.imaging import content_hash
from loupe.intake.labels import EditAction, InputEdit
from loupe.store.filters import ConceptFilter, SearchFilter
from loupe.store.records import CLI, Input

Opener = Callable[[argparse.Namespace], Loupe]
TARGETS_HELP = ("input ids, image files (every input holding that image) or patterns over ids and import paths "
                "(quote them: 'hat/*.jpg')")


def register(sub: argparse._SubParsersAction, open_loupe: Opener, open_existing: Opener) -> None:
    inputs = sub.add_parser("inputs", help="list, label, unlabel or delete an app's inputs",
                            description="An app's inputs from the terminal. Targets are " + TARGETS_HELP + ".")
    actions = inputs.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = actions.add_parser("list", help="the app's inputs, newest first, with their labels")
    p.add_argument("--app", required=True, help="the app whose inputs to list")
    p.add_argument("--concept", help="only inputs labeled with this concept")
    p.add_argument("--not", dest="negative", action="store_true", help="with --concept: labeled NOT that concept")
    p.add_argument("--unlabeled", action="store_true", help="only inputs with no label at all")
    p.add_argument("--page", type=positive_int, default=1, help="which page (default 1)")
    p.add_argument("--per-page", type=positive_int, default=50, help="inputs per page (default 50)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=lambda args: _run(open_existing, _list, args))

    for name, text in (("label", "label inputs as a concept (or, with --not, as not that concept)"),
                       ("unlabel", "take a concept's label (both ways) off inputs, or every label without --concept")):
        p = actions.add_parser(name, help=text, description=text + ". Targets are " + TARGETS_HELP + ".")
        p.add_argument("targets", nargs="*", metavar="TARGET", help=TARGETS_HELP)
        p.add_argument("--app", required=True, help="the app the inputs belong to")
        p.add_argument("--concept",
                       help="the concept" + (" (or a `concept` column in --csv)" if name == "label" else ""))
        if name == "label":
            p.add_argument("--not", dest="negative", action="store_true", help="label as NOT the concept")
            p.add_argument("--csv", help="a CSV of rows: input (id, file or pattern), concept, value (1 or 0)")
        p.set_defaults(func=lambda args, fn=(_label if name == "label" else _unlabel): _run(open_loupe, fn, args))

    p = actions.add_parser("delete", help="delete inputs (their images go when no other input holds them)")
    p.add_argument("targets", nargs="+", metavar="TARGET", help=TARGETS_HELP)
    p.add_argument("--app", required=True, help="the app the inputs belong to")
    p.add_argument("--yes", action="store_true", help="confirm: deleted inputs cannot be brought back")
    p.set_defaults(func=lambda args: _run(open_loupe, _delete, args))


def _run(opener: Opener, fn: Callable[[Loupe, argparse.Namespace], int], args: argparse.Namespace) -> int:
    with opener(args) as loupe:
        return fn(loupe, args)


def _hashes(targets: list[str]) -> dict[str, str]:
    """Content hashes of the targets that are image files here (the rest are ids or patterns)."""
    return {t: content_hash(Path(t).read_bytes()) for t in targets if Path(t).is_file()}


def _matching(loupe: Loupe, app_id: str, targets: list[str]) -> list[str]:
    if not targets:
        raise LoupeError("name the inputs: " + TARGETS_HELP)
    return loupe.inputs.matching(app_id, targets, _hashes(targets))


def _name(record: Input) -> str:
    return str(record.metadata.get("filename") or record.source or "")


def _list(loupe: Loupe, args: argparse.Namespace) -> int:
    if args.unlabeled and args.concept:
        raise LoupeError("give --concept or --unlabeled, not both")
    flt = SearchFilter(concepts=(ConceptFilter(args.concept, not args.negative),)) if args.concept else None
    records = (loupe.inputs.unlabeled(args.app, page=args.page, per_page=args.per_page) if args.unlabeled else
               loupe.inputs.list_page(args.app, page=args.page, per_page=args.per_page, flt=flt))
    if args.json:
        as_json([{"id": r.id, "file": _name(r), "concepts": r.concepts, "not_concepts": r.not_concepts,
                  "created_at": r.created_at} for r in records])
    elif not records:
        print("no inputs here" + (" on this page" if args.page > 1 else "") +
              ("" if args.concept or args.unlabeled else f": `loupe import DIR --app {args.app}` adds some"))
    else:
        table(["id", "file", "concepts", "not", "added"],
              [[r.id, _name(r) or "-", ",".join(r.concepts) or "-", ",".join(r.not_concepts) or "-", when(r.created_at)]
               for r in records])
    return 0


def _label(loupe: Loupe, args: argparse.Namespace) -> int:
    rows: list[tuple[str, str, bool]] = []  # (target, concept, positive)
    if args.csv:
        with open(args.csv, newline="") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                concept = (row.get("concept") or args.concept or "").strip()
                if not row.get("input") or not concept:
                    raise LoupeError(f"{args.csv} line {line}: needs `input` and `concept` (or --concept)")
                value = (row.get("value") or "1").strip()
                if value not in ("0", "1"):
                    raise LoupeError(f"{args.csv} line {line}: value must be 1 or 0, got {value!r}")
                rows.append((row["input"].strip(), concept, value == "1" and not args.negative))
    if args.targets:
        if not args.concept:
            raise LoupeError("--concept names what to label them as")
        rows += [(t, args.concept, not args.negative) for t in args.targets]
    if not rows:
        raise LoupeError("name the inputs (" + TARGETS_HELP + ") or give --csv FILE")
    edits: dict[tuple[str, bool], list[str]] = {}
    for target, concept, positive in rows:  # every target is resolved before anything is written
        edits.setdefault((concept, positive), []).extend(_matching(loupe, args.app, [target]))
    for (concept, positive), ids in edits.items():
        loupe.inputs.edit(args.app, EditAction.MERGE, [
            InputEdit(input_id=i, concepts=[concept] if positive else [], not_concepts=[] if positive else [concept])
            for i in dict.fromkeys(ids)], by=CLI)
        print(f"labeled {len(set(ids))} input(s) as {'' if positive else 'not '}{concept}")
    return 0


def _unlabel(loupe: Loupe, args: argparse.Namespace) -> int:
    ids = _matching(loupe, args.app, args.targets)
    if args.concept:
        loupe.inputs.edit(args.app, EditAction.REMOVE, [InputEdit(input_id=i, concepts=[args.concept]) for i in ids],
                          by=CLI)
        print(f"took {args.concept!r} off {len(ids)} input(s)")
    else:
        loupe.inputs.edit(args.app, EditAction.OVERWRITE, [InputEdit(input_id=i) for i in ids], by=CLI)
        print(f"took every label off {len(ids)} input(s)")
    return 0


def _delete(loupe: Loupe, args: argparse.Namespace) -> int:
    ids = _matching(loupe, args.app, args.targets)
    if not args.yes:
        raise LoupeError(f"this deletes {len(ids)} input(s) of {args.app!r} for good: add --yes to go ahead")
    print(f"deleted {loupe.inputs.delete(args.app, ids, by=CLI)} input(s)")
    return 0
