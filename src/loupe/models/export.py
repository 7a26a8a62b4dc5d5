"""Model export: a trained version as a folder a device runs without Loupe (ONNX or OpenVINO).

The folder holds one graph from image to confidences (loupe.models.export_graph: backbone, head and the
neighbour vote over the inputs that vote for the model, as the server has them at export time; an
OpenVINO export splits it into the tower, converted as the server converts it, and the head),
preprocess.json, concepts.json, requirements.txt and predict.py (loupe.models.standalone_predict).
Label edits after the export do not reach it: export again. It is written beside DEST and renamed into
place, so an interrupted export leaves no half folder.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from loupe.apps.context import AppContext
from loupe.backbones.compiled import RuntimeUnavailable, convert
from loupe.backbones.registry import load_torch
from loupe.backbones.specs import SPECS
from loupe.errors import CapabilityMissing, InvalidArgument, QuotaExceeded
from loupe.intake.image_pipeline import draft_size
from loupe.learning.neighbours import vote_targets
from loupe.learning.training_set import LabelRule
from loupe.models.export_spec import GraphSpec, Voters
from loupe.models.predictor import EXACT_SUBSET_MAX, CustomPredictor
from loupe.store.records import App, ModelVersion

MAX_VOTERS = EXACT_SUBSET_MAX  # 20,000 x 1,280 fp32 = 100 MB in the graph at most
SELF_CHECK_IMAGES = 4  # the written graph is run against torch on this many images before it is handed over
SELF_CHECK_TOLERANCE = 1e-3
REQUIREMENTS = {"onnx": ["numpy>=1.24", "pillow>=10", "onnxruntime>=1.17"],
                "openvino": ["numpy>=1.24", "pillow>=10", "openvino>=2024.0"]}


class ExportFormat(StrEnum):
    ONNX = "onnx"
    OPENVINO = "openvino"


class ExportedModel(msgspec.Struct, kw_only=True):
    app_id: str
    model_id: str
    version_id: str
    format: ExportFormat
    path: str
    backbone: str
    concepts: int
    voters: int  # labeled (and background) vectors in the graph; 0 for a head-only export
    files: list[str]
    size_bytes: int
    seconds: float
    self_check_difference: float  # largest |confidence| difference of the written graph against torch
    server_precision: str  # what this server embeds queries with: "fp32" or "bf16"


class ModelExport:
    def __init__(self, context: AppContext, predictor: CustomPredictor) -> None:
        self._context = context
        self._predictor = predictor

    def export(self, app_id: str, model_id: str, dest: Path, fmt: ExportFormat = ExportFormat.ONNX, *,
               version_id: str | None = None, neighbours: bool = True) -> ExportedModel:
        """The version predictions use (or the named one) into `dest` (absent or an empty folder).
        `neighbours=False`: the head alone (no labeled vectors in the file; confidences then differ from
        the server's wherever a labeled neighbour is close, and no "out of scope" verdict)."""
        started = time.monotonic()
        dest = Path(dest)
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise InvalidArgument(f"{dest} exists and is not an empty folder: export into a new one")
        app = self._context.sync(app_id)
        loaded = self._predictor.loaded(app_id, model_id, version_id)
        version = loaded.version
        if version.backbone != app.backbone:
            raise InvalidArgument(f"version {version.id} was trained on {version.backbone}, "
                                  f"the app uses {app.backbone}")
        assert version.blend is not None  # every trained version has one
        voters = self._voters(app, version, loaded.rule) if neighbours else None
        import torch  # here: the rest of Loupe serves without importing torch

        from loupe.models.export_graph import ScoringGraph, write_onnx, write_openvino

        # The fp32 torch tower is the reference every runtime is checked against (loupe.backbones).
        config = msgspec.structs.replace(self._context.config, runtime="torch", precision="fp32")
        backbone = load_torch(version.backbone, config)
        spec = GraphSpec(weights=loaded.head.weights, bias=loaded.head.bias,
                         mutually_exclusive=version.mutually_exclusive, temperature=version.blend.temperature,
                         head_weight=version.blend.head_weight,
                         k=version.blend.k, sharpness=version.blend.sharpness, voters=voters)
        tower = backbone.image_tower()
        graph = ScoringGraph(tower, spec)
        embedder = self._context.backbone(app).embedder  # runtime/precision of the server's queries
        p = backbone.preprocessing
        dest.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
        try:
            if fmt is ExportFormat.OPENVINO:
                # The tower converted as the server converts it (loupe.backbones.compiled), so that run
                # in the server's precision it rounds as the server does; the head graph runs in fp32,
                # as the server's numpy scoring.
                try:
                    convert(backbone, "image", SPECS[version.backbone], work / "tower")
                except RuntimeUnavailable as exc:
                    raise CapabilityMissing(f"cannot write an OpenVINO export here: {exc}") from exc
                (work / "tower" / "classifier.npz").unlink(missing_ok=True)
                write_onnx(ScoringGraph(torch.nn.Identity(), spec), (2, version.dim), work / "head.onnx")
                write_openvino(work / "head.onnx", work / "head.xml")
                (work / "head.onnx").unlink()
            else:
                write_onnx(graph, (2, 3, p.size, p.size), work / "model.onnx")
            difference = _self_check(graph, work, fmt, p.size)
            _write_json(work / "preprocess.json", {
                "size": p.size, "crop_pct": p.crop_pct, "mean": list(p.mean), "std": list(p.std),
                "resample": int(p.resample), "draft": draft_size(backbone), "layout": "NCHW float32 RGB"})
            _write_json(work / "concepts.json", self._description(app, version, voters, embedder))
            (work / "requirements.txt").write_text("\n".join(REQUIREMENTS[fmt.value]) + "\n")
            source = resources.files("loupe.models").joinpath("standalone_predict.py").read_text()
            (work / "predict.py").write_text(source)
            if dest.exists():
                dest.rmdir()  # empty (checked above)
            work.rename(dest)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        files = sorted(f.name for f in dest.iterdir())
        return ExportedModel(app_id=app_id, model_id=model_id, version_id=version.id, format=fmt, path=str(dest),
                             backbone=version.backbone, concepts=len(version.concept_ids),
                             voters=0 if voters is None else len(voters.vectors), files=files,
                             size_bytes=sum(f.stat().st_size for f in dest.rglob("*") if f.is_file()),
                             seconds=time.monotonic() - started, self_check_difference=difference,
                             server_precision=embedder.rpartition("/")[2])

    def _voters(self, app: App, version: ModelVersion, rule: LabelRule) -> Voters:
        """The inputs that vote for the version, as the server's exact search over them has them now."""
        labels = self._context.labels.get(app.id)
        entries = [(seq, e) for seq, e in sorted(labels.entries.items()) if rule.relevant(e)]
        if len(entries) > MAX_VOTERS:
            raise QuotaExceeded(f"{len(entries):,} inputs vote for this model, more than the {MAX_VOTERS:,} an "
                                "export carries: export the head alone (--head-only) or label fewer background inputs")
        seqs = np.asarray([s for s, _ in entries], np.int64)
        vectors = self._context.embeddings_of(app, seqs) if len(seqs) else np.zeros((0, version.dim), np.float32)
        positive, negative = rule.matrices([e for _, e in entries])
        votes, voting = vote_targets(positive, negative, version.mutually_exclusive)
        examples = np.asarray([rule.names_a_concept(e) for _, e in entries], bool)
        return Voters(vectors=np.asarray(vectors, np.float32), votes=votes, voting=voting, examples=examples)

    def _description(self, app: App, version: ModelVersion, voters: Voters | None, embedder: str) -> dict:
        with self._context.store.read() as tx:
            names = {cid: (c.name if (c := tx.get_concept(app.id, cid)) is not None else cid)
                     for cid in version.concept_ids}
        thresholds = {t.concept_id: t.threshold for t in version.thresholds}
        # Versions from before thresholds: Clarifai's reading (the top concept / 0.5), as the server.
        fallback = 0.0 if version.mutually_exclusive else 0.5
        return {"app_id": app.id, "model_id": version.model_id, "version_id": version.id,
                "backbone": version.backbone, "server_embedder": embedder,
                "mutually_exclusive": version.mutually_exclusive,
                "neighbours": voters is not None and len(voters.vectors) > 0,
                "scope_similarity": version.scope_similarity if voters is not None else 0.0,
                "exported_at": time.time(),
                "concepts": [{"id": cid, "name": names[cid], "threshold": thresholds.get(cid, fallback)}
                             for cid in version.concept_ids]}


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n")


def _self_check(graph: Any, folder: Path, fmt: ExportFormat, size: int) -> float:
    """Run the written graph on the runtime the device will use and compare it with torch: a converter
    that mistranslated an operator fails the export here, not on the device."""
    from loupe.models.export_graph import run_torch

    arrays = np.random.default_rng(0).standard_normal((SELF_CHECK_IMAGES, 3, size, size)).astype(np.float32)
    expected, _ = run_torch(graph, arrays)
    if fmt is ExportFormat.OPENVINO:
        import openvino as ov

        core, fp32 = ov.Core(), {"INFERENCE_PRECISION_HINT": "f32"}
        features = np.asarray(core.compile_model(str(folder / "tower" / "model.xml"), "CPU", fp32)(arrays)[0])
        got = np.asarray(core.compile_model(str(folder / "head.xml"), "CPU", fp32)(features)[0])
    else:
        import onnxruntime as ort

        session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        got = session.run(["scores"], {"images": arrays})[0]
    difference = float(np.abs(got - expected).max())
    if not difference <= SELF_CHECK_TOLERANCE:
        raise CapabilityMissing(f"the exported graph answers differently from the model ({difference:.4f} apart) "
                              f"on {fmt.value}: this backbone does not convert faithfully")
    return difference
