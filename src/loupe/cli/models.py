"""`loupe models ...` and `loupe predict`: the whole custom-model loop from a terminal."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from loupe.application import Loupe
from loupe.cli.output import as_json, positive_int, table, when
from loupe.errors import ImageError, LoupeError
from loupe.intake.folder_import import IMAGE_SUFFIXES
from loupe.learning.prediction import Prediction
from loupe.learning.training_set import UnlabeledRule, unlabeled_rule_of
from loupe.learning.values import EvaluationStatus
from loupe.models.export import ExportFormat
from loupe.store.records import CLI, Model, ModelVersion, Serving, VersionStatus

Opener = Callable[[argparse.Namespace], Loupe]


def register(sub: argparse._SubParsersAction, open_loupe: Opener) -> None:
    models = sub.add_parser("models", help="create, train, list, evaluate, advise on and delete custom models",
                            description="Custom models of an app: each names concepts; train makes a version.")
    actions = models.add_subparsers(dest="action", required=True)

    def action(name: str, help_text: str, fn: Callable[[Loupe, argparse.Namespace], int],
               model: bool = True) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--app", required=True, help="the app the model belongs to")
        if model:
            p.add_argument("model", help="the model's id")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        p.set_defaults(func=lambda args: _run(open_loupe, fn, args))
        return p

    p = action("create", "create a model over some of the app's concepts", _create)
    p.add_argument("--concepts", required=True, help="comma-separated concept ids, e.g. hat,shoes,dress")
    p.add_argument("--name", help="a display name (default: the id)")
    p.add_argument("--mutually-exclusive", action="store_true",
                   help="exactly one concept applies to an image (confidences sum to 1)")
    p.add_argument("--closed-environment", action="store_true",
                   help="train only on inputs labeled with the model's concepts (by default, as in Clarifai, inputs "
                        "labeled only with other concepts are negatives; inputs with no label are never negatives "
                        "of a mutually exclusive model, and each train of a multi-label one decides: docs/models.md, "
                        "'What counts as a negative')")
    p.add_argument("--serving", choices=["latest", "published"], default="latest",
                   help="which version answers predictions that name none: the newest trained one (default), "
                        "or the one published with `loupe models publish` (new versions wait until then)")
    p.add_argument("--target-precision", type=float,
                   help="the precision each concept's threshold is chosen for (default 0.9)")
    action("train", "train a new version now (small sets finish before the command returns)", _train)
    action("list", "list the app's models and their latest versions", _list, model=False)
    action("versions", "list a model's versions, newest first, with their status and metrics", _versions)
    action("evaluate", "cross-validate the latest trained version (5 folds) and print its metrics", _evaluate)
    action("advice", "data-quality findings: few examples, imbalance, confusable concepts, suspected mislabels, "
                     "duplicates", _advice)
    action("delete", "delete a model and all its versions", _delete)
    p = action("publish", "publish a trained version (the newest if none is given): what version-less "
                          "predictions of a model with --serving published get", _publish)
    p.add_argument("version", nargs="?", help="the version's id (default: the newest trained one)")
    action("rollback", "publish again the version published before the current one", _rollback)
    p = action("changes", "what a version answers differently from the published (or previous) one, over the "
                          "stored inputs, with both versions' per-concept thresholds", _changes)
    p.add_argument("version", nargs="?", help="the version's id (default: the newest trained one)")
    p.add_argument("--against", help="the version to compare with")
    p = action("prune", "delete old versions the retention rule does not keep (the newest --keep, the newest "
                        "trained one, any training or evaluating, any a workflow names); every model of the "
                        "app unless --model is given", _prune, model=False)
    p.add_argument("--model", help="only this model")
    p.add_argument("--keep", type=positive_int, help="versions to keep per model (default: keep_versions, 20)")
    p = action("export", "write a trained version as a folder a device runs without Loupe: one ONNX (or OpenVINO) "
                         "graph from image to confidences (backbone, head and the labeled neighbours' vote), "
                         "preprocess.json, concepts.json, requirements.txt and predict.py", _export)
    p.add_argument("dest", help="the folder to write (must not exist, or be empty)")
    p.add_argument("--format", choices=[f.value for f in ExportFormat], default=ExportFormat.ONNX.value,
                   help="onnx (run with onnxruntime, default) or openvino")
    p.add_argument("--version", help="the version's id (default: the one predictions use)")
    p.add_argument("--head-only", action="store_true",
                   help="leave the labeled vectors out: a smaller file whose answers ignore the neighbours' vote")

    p = sub.add_parser("predict", help="predict images (files, folders or URLs) with a custom model",
                       description="Predict every concept of a model for each image, best first.")
    p.add_argument("images", nargs="+", metavar="FILE|DIR|URL", help="image files, folders of images, or URLs")
    p.add_argument("--app", required=True, help="the app the model belongs to")
    p.add_argument("--model", required=True, help="the model's id")
    p.add_argument("--top", type=positive_int, default=3, help="concepts to show per image (default 3)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=lambda args: _run(open_loupe, _predict, args))


def _export(loupe: Loupe, args: argparse.Namespace) -> int:
    done = loupe.exports.export(args.app, args.model, Path(args.dest), ExportFormat(args.format),
                                version_id=args.version, neighbours=not args.head_only)
    if args.json:
        as_json(done)
    else:
        print(f"exported version {done.version_id} of {done.model_id!r} ({done.concepts} concepts, {done.voters:,} "
              f"labeled vectors, {done.size_bytes / 1e6:.1f} MB) to {done.path} in {done.seconds:.1f} s")
        print(f"run it: pip install -r {done.path}/requirements.txt && python {done.path}/predict.py IMAGE...")
        if done.server_precision == "bf16" and done.format is ExportFormat.ONNX:
            print("note: this server embeds in bf16 and onnxruntime runs fp32: confidences may differ from the "
                  "server's by a few hundredths (the top concept rarely); --format openvino runs bf16 as it does")
    return 0


def _run(open_loupe: Opener, fn: Callable[[Loupe, argparse.Namespace], int], args: argparse.Namespace) -> int:
    with open_loupe(args) as loupe:
        return fn(loupe, args)


def _create(loupe: Loupe, args: argparse.Namespace) -> int:
    concepts = [c.strip() for c in args.concepts.split(",") if c.strip()]
    if not concepts:
        raise LoupeError("--concepts needs at least one concept id")
    model, _ = loupe.models.create(args.app, args.model, name=args.name, concept_ids=concepts,
                                   mutually_exclusive=args.mutually_exclusive,
                                   closed_environment=args.closed_environment, serving=args.serving,
                                   target_precision=args.target_precision, by=CLI)
    if args.json:
        as_json(model)
    else:
        print(f"created model {model.id!r} over {', '.join(model.concept_ids)}; "
              f"train it: loupe models train --app {args.app} {model.id}")
    return 0


def _train(loupe: Loupe, args: argparse.Namespace) -> int:
    version = loupe.trainer.train(args.app, args.model, wait=True, by=CLI)
    if args.json:
        as_json(_version_summary(version))
        return 0 if version.status is VersionStatus.TRAINED else 1
    if version.status is not VersionStatus.TRAINED:
        print(f"training failed: {version.detail}")
        return 1
    print(f"trained version {version.id} of {args.model!r} on {version.train_size} examples in "
          f"{version.train_seconds:.2f} s")
    if version.unlabeled_seen:
        rule = unlabeled_rule_of(version.closed_environment, version.unlabeled_rule)
        what = {UnlabeledRule.PSEUDO_LABELS: f"{version.pseudo_labels} became pseudo-labels",
                UnlabeledRule.NEGATIVES: "they are negatives of every concept",
                UnlabeledRule.IGNORED: "not used"}[rule]
        print(f"{version.unlabeled_seen} unlabeled inputs: {what} ({version.unlabeled_reason})")
    return 0


def _list(loupe: Loupe, args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    for model in loupe.models.list_models(args.app, per_page=1000):
        version = loupe.models.version(args.app, model.id)
        rows.append({"id": model.id, "concepts": model.concept_ids, "mutually_exclusive": model.mutually_exclusive,
                     "closed_environment": model.closed_environment, "latest_version": _version_summary(version)})
    if args.json:
        as_json(rows)
    elif not rows:
        print(f"no models in {args.app!r} yet: loupe models create --app {args.app} MODEL --concepts a,b")
    else:
        table(["model", "concepts", "latest version", "status", "trained"],
              [[r["id"], ",".join(r["concepts"]), r["latest_version"]["id"], r["latest_version"]["status"],
                when(r["latest_version"]["trained_at"])] for r in rows])
    return 0


def _versions(loupe: Loupe, args: argparse.Namespace) -> int:
    versions = [_version_summary(v) for v in loupe.models.versions(args.app, args.model, per_page=1000)]
    if args.json:
        as_json(versions)
    else:
        table(["version", "status", "examples", "seconds", "unlabeled inputs", "top-1 (evaluated)", "trained"],
              [[v["id"], v["status"], v["train_size"], v["train_seconds"],
                f"{v['unlabeled']['rule']} ({v['unlabeled']['seen']})" if v["unlabeled"]["seen"] else "-",
                v["top1_accuracy"], when(v["trained_at"])] for v in versions])
    return 0


def _evaluate(loupe: Loupe, args: argparse.Namespace) -> int:
    latest = loupe.predictor.trained_version(args.app, args.model)
    version = loupe.quality.evaluate(args.app, args.model, latest.id, wait=True, by=CLI)
    evaluation = version.evaluation
    if evaluation is None or evaluation.status is not EvaluationStatus.EVALUATED:
        print(f"evaluation failed: {evaluation.detail if evaluation else 'no result'}")
        return 1
    if args.json:
        as_json({k: v for k, v in msgspec.to_builtins(evaluation).items() if k != "predictions"})
        return 0
    if evaluation.top1_accuracy is not None:
        print(f"top-1 accuracy {evaluation.top1_accuracy:.3f} ({evaluation.folds}-fold cross-validation)")
    table(["concept", "positives", "ROC AUC", "precision", "recall", "F1"],
          [[m.concept_id, m.num_pos, _round(m.roc_auc), _round(m.precision), _round(m.recall), _round(m.f1)]
           for m in evaluation.concepts])
    return 0


def _advice(loupe: Loupe, args: argparse.Namespace) -> int:
    findings = loupe.quality.advice(args.app, args.model).result()
    if args.json:
        as_json(findings)
    elif not findings:
        print("no findings: the labels look consistent")
    else:
        table(["kind", "concepts", "inputs", "advice"],
              [[f.kind, ",".join(f.concept_ids) or "-",
                ",".join(f.input_ids[:5]) + (" ..." if len(f.input_ids) > 5 else ""), f.message] for f in findings])
    return 0


def _publish(loupe: Loupe, args: argparse.Namespace) -> int:
    model = loupe.models.publish(args.app, args.model, args.version, by=CLI)
    return _published(model, args)


def _rollback(loupe: Loupe, args: argparse.Namespace) -> int:
    return _published(loupe.models.rollback(args.app, args.model, by=CLI), args)


def _published(model: Model, args: argparse.Namespace) -> int:
    last = model.publications[-1]
    if args.json:
        as_json({"model": model.id, "published": model.published, "previous": last.previous})
    else:
        print(f"model {model.id!r} now serves version {model.published} (was {last.previous or 'nothing'})"
              + ("" if model.serving is Serving.PUBLISHED else
                 "; it serves its latest version until --serving published is set"))
    return 0


def _changes(loupe: Loupe, args: argparse.Namespace) -> int:
    report = loupe.changes.report(args.app, args.model, args.version, args.against)
    if args.json:
        as_json(report)
        return 0
    print(f"version {report.version_id} against {report.against}: {report.changed} of {report.compared} "
          f"compared inputs answer differently (about {report.changed_estimate} of {report.inputs})")
    table(["concept", "threshold before", "precision before", "threshold after", "precision after"],
          [[c.concept_id, _round(c.before.threshold if c.before else None),
            _round(c.before.precision if c.before else None), _round(c.after.threshold if c.after else None),
            _round(c.after.precision if c.after else None)] for c in report.concepts])
    if report.changes:
        table(["input", "before", "after", "change"],
              [[c.input_id, ",".join(c.before.decision) or "-", ",".join(c.after.decision) or "-", c.change]
               for c in report.changes[:20]])
    return 0


def _prune(loupe: Loupe, args: argparse.Namespace) -> int:
    gone = loupe.models.prune(args.app, args.model, args.keep, by=CLI)
    print(f"deleted {gone} old version{'s' * (gone != 1)}") if not args.json else as_json({"deleted": gone})
    return 0


def _delete(loupe: Loupe, args: argparse.Namespace) -> int:
    loupe.models.delete(args.app, args.model, by=CLI)
    print(f"deleted model {args.model!r}") if not args.json else as_json({"deleted": args.model})
    return 0


def _predict(loupe: Loupe, args: argparse.Namespace) -> int:
    names, images = [], []
    for source in args.images:
        for name, data in _read_images(loupe, source):
            names.append(name)
            images.append(data)
    if not images:
        raise LoupeError("no images found in " + ", ".join(args.images))
    rows: list[dict[str, Any]] = []
    failed = 0

    def answered(name: str, prediction: Prediction | None) -> None:
        assert prediction is not None  # a custom model answers every image
        rows.append({"image": name, "version": prediction.version_id, "verdict": prediction.verdict.value,
                     "concepts": [{"id": c.concept_id, "value": round(c.value, 4)}
                                  for c in prediction.concepts[:args.top]]})

    for start in range(0, len(images), 32):
        batch, batch_names = images[start:start + 32], names[start:start + 32]
        try:
            answer = loupe.predictions.predict(args.app, args.model, batch)
        except ImageError:  # some file of the batch is not a usable image: go one by one, name each
            for name, data in zip(batch_names, batch):
                try:
                    answered(name, loupe.predictions.predict(args.app, args.model, [data]).predictions[0])
                except ImageError as exc:
                    failed += 1
                    rows.append({"image": name, "error": exc.message})
            continue
        for name, prediction in zip(batch_names, answer.predictions):
            answered(name, prediction)
    if args.json:
        as_json(rows)
    else:
        table(["image", *[f"#{i + 1}" for i in range(args.top)]],
              [[r["image"], *([f"{c['id']} {c['value']:.3f}" for c in r["concepts"]] if "concepts" in r
                              else [f"failed: {r['error']}", *[""] * (args.top - 1)])] for r in rows])
    return 1 if failed else 0


def _read_images(loupe: Loupe, source: str) -> list[tuple[str, bytes]]:
    if source.startswith(("http://", "https://")):
        return [(source, loupe.urls.fetch(source))]
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        return [(str(p), p.read_bytes()) for p in files]
    if not path.is_file():
        raise LoupeError(f"{source}: no such file, folder or URL")
    return [(source, path.read_bytes())]


def _version_summary(version: ModelVersion) -> dict:
    evaluation = version.evaluation
    return {"id": version.id, "status": version.status, "detail": version.detail, "train_size": version.train_size,
            "train_seconds": round(version.train_seconds, 3), "trained_at": version.trained_at,
            "top1_accuracy": None if evaluation is None or evaluation.top1_accuracy is None
            else round(evaluation.top1_accuracy, 4),
            "unlabeled": {"rule": unlabeled_rule_of(version.closed_environment, version.unlabeled_rule).value,
                          "seen": version.unlabeled_seen, "pseudo_labels": version.pseudo_labels,
                          "reason": version.unlabeled_reason}}


def _round(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
