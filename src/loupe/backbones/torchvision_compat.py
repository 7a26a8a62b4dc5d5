"""Import timm / open_clip on a CPU-only torch whose torchvision wheel has no compiled ops.

The only torchvision wheel that matches torch 2.13.0 here ships C++ ops built for CUDA, so importing
torchvision fails with "operator torchvision::nms does not exist" (its Python side registers a fake
kernel for an op schema that was never defined). Neither Loupe nor the backbones call nms/qnms, so
defining just the two schemas lets the import succeed. We only do this when the plain import fails,
so a working torchvision (e.g. on a user's CUDA machine) is left untouched.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

import torch

_schema_library: torch.library.Library | None = None


def _define_missing_torchvision_ops() -> None:
    global _schema_library
    if _schema_library is not None:
        return
    # Keep a reference: the schemas are dropped when the Library object is garbage collected.
    _schema_library = torch.library.Library("torchvision", "DEF")
    _schema_library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _schema_library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def _forget_partial_imports() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in ("torchvision", "timm", "open_clip"):
            del sys.modules[name]


def import_with_torchvision_fix(module: str) -> ModuleType:
    """Import `module` (timm, open_clip); on the missing-op error, define the ops and retry once."""
    try:
        return importlib.import_module(module)
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
    _forget_partial_imports()
    _define_missing_torchvision_ops()
    return importlib.import_module(module)
