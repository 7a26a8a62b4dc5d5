"""Predict with a model exported by `loupe models export`, without Loupe: python predict.py IMAGE|FOLDER ...

Needs only numpy, pillow and onnxruntime (or openvino, for an OpenVINO export): see requirements.txt.
Prints what `loupe predict --json` prints: per image its version, verdict and best concepts. Images are
read as the server reads them (upright by EXIF, transparency on white, JPEGs decoded at reduced scale
where the crop keeps twice the network's input side) and cropped and normalised as preprocess.json says.
This file is copied into every export; it imports nothing of Loupe.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
NO_EXAMPLE = -1.5  # the graph answers -2 when no labeled example was among the neighbours
BATCH = 16


def to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in HIGH_DEPTH_MODES:
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def preprocess(path: Path, p: dict) -> np.ndarray:
    """One image file -> float32 CHW: the centre square of crop_pct x the shorter side, resized to size."""
    with Image.open(path) as img:
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        if img.format == "JPEG" and min(img.size) >= 2 * p["draft"]:
            img.draft("RGB", (p["draft"], p["draft"]))
        img.load()
        rgb = to_rgb(ImageOps.exif_transpose(img) or img)
    w, h = rgb.size
    side = max(1.0, min(w, h) * p["crop_pct"])
    left, top = (w - side) / 2, (h - side) / 2
    size = p["size"]
    resized = rgb.resize((size, size), p["resample"], box=(left, top, left + side, top + side))
    arr = np.asarray(resized, dtype=np.float32) * np.float32(1.0 / 255.0)
    normalised = (arr - np.asarray(p["mean"], np.float32)) / np.asarray(p["std"], np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1), dtype=np.float32)


class Runner:
    """An ONNX export on onnxruntime (model.onnx: image to confidences, fp32), or an OpenVINO export
    (tower/model.xml: image to features, in the server's precision; head.xml: features to confidences, fp32)."""

    def __init__(self, runtime: str, precision: str) -> None:
        if runtime == "auto":
            runtime = "openvino" if (HERE / "head.xml").exists() else "onnxruntime"
        self.runtime = runtime
        if runtime == "openvino":
            import openvino as ov

            # As the server embeds (concepts.json "server_embedder"): the tower is converted as the
            # server's, so in bf16 it rounds as the server does (bf16 needs a CPU with bf16 units;
            # elsewhere OpenVINO runs f32). The head stays fp32, as the server's scoring.
            core = ov.Core()
            hint = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
            self._tower = core.compile_model(str(HERE / "tower" / "model.xml"), "CPU", hint)
            self._head = core.compile_model(str(HERE / "head.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        else:
            import onnxruntime as ort

            self._session = ort.InferenceSession(str(HERE / "model.onnx"), providers=["CPUExecutionProvider"])

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.runtime == "openvino":
            out = self._head(np.asarray(self._tower(batch)[0], np.float32))
            return np.asarray(out[0]), np.asarray(out[1])
        scores, nearest, _ = self._session.run(None, {"images": batch})
        return scores, nearest


def verdict(scores: np.ndarray, nearest: float, model: dict) -> str:
    """As the server judges: a concept meets its threshold (a mutually exclusive model: its top concept
    only), and the image is in scope (its nearest labeled example at least scope_similarity alike)."""
    cuts = np.asarray([c["threshold"] for c in model["concepts"]], np.float32)
    order = np.argsort(-scores, kind="stable")
    if model["mutually_exclusive"]:
        order = order[:1]
    met = [j for j in order if scores[j] >= cuts[j]]
    scope = model["scope_similarity"]
    if scope and model["neighbours"] and (nearest < NO_EXAMPLE or nearest < scope):
        return "out_of_scope"
    return "confident" if met else "unsure"


def images_in(sources: list[str]) -> list[Path]:
    found = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            found.append(path)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", help="image files or folders of them")
    parser.add_argument("--top", type=int, default=3, help="concepts to show per image (default 3)")
    parser.add_argument("--runtime", choices=["auto", "onnxruntime", "openvino"], default="auto",
                        help="auto: openvino for an OpenVINO export, else onnxruntime")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="OpenVINO only (onnxruntime runs fp32): auto is what the server embedded with")
    args = parser.parse_args(argv)
    model = json.loads((HERE / "concepts.json").read_text())
    pre = json.loads((HERE / "preprocess.json").read_text())
    precision = args.precision
    if precision == "auto":
        precision = "bf16" if model["server_embedder"].endswith("/bf16") else "fp32"
    run = Runner(args.runtime, precision)
    ids = [c["id"] for c in model["concepts"]]
    rows: list[dict] = []
    failed = 0
    paths = images_in(args.images)
    for start in range(0, len(paths), BATCH):
        batch: list[dict] = []  # this batch's rows in file order; the images' rows filled in below
        arrays = []
        for path in paths[start:start + BATCH]:
            try:
                arrays.append(preprocess(path, pre))
                batch.append({"image": str(path)})
            except Exception as exc:  # noqa: BLE001 - any unreadable file is reported and skipped
                failed += 1
                batch.append({"image": str(path), "error": f"not a usable image ({type(exc).__name__}: {exc})"})
        if arrays:
            scores, nearest = run(np.stack(arrays))
            answered = iter(zip(scores, nearest))
            for entry in batch:
                if "error" in entry:
                    continue
                row, near = next(answered)
                order = np.argsort(-row, kind="stable")[:args.top]
                entry.update({"version": model["version_id"], "verdict": verdict(row, float(near), model),
                              "concepts": [{"id": ids[j], "value": round(float(row[j]), 4)} for j in order]})
        rows += batch
    sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    return 1 if failed or not paths else 0


if __name__ == "__main__":
    sys.exit(main())
