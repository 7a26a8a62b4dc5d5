"""One graph from image to confidences: the backbone's image tower, L2 normalisation, the version's head
and, where the version blends in neighbour votes, the vote over its labeled vectors as matrix products.
It computes what loupe.learning.prediction computes for a custom model (exact neighbour search over the
inputs that vote), so a device answers as the server does without Loupe."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from loupe.models.export_spec import NO_EXAMPLE, GraphSpec

OPSET = 17

class ScoringGraph(torch.nn.Module):
    """images [n, 3, H, W] -> (confidences [n, c], nearest example similarity [n], embedding [n, d])."""

    weights: torch.Tensor
    bias: torch.Tensor
    voters: torch.Tensor
    votes: torch.Tensor
    voting: torch.Tensor
    examples: torch.Tensor

    def __init__(self, tower: torch.nn.Module, spec: GraphSpec) -> None:
        super().__init__()
        self.tower = tower
        self.mutually_exclusive = spec.mutually_exclusive
        self.temperature = float(spec.temperature)
        self.head_weight = float(spec.head_weight)
        self.sharpness = float(spec.sharpness)
        self.register_buffer("weights", torch.from_numpy(np.ascontiguousarray(spec.weights, np.float32)))
        self.register_buffer("bias", torch.from_numpy(np.ascontiguousarray(spec.bias, np.float32)))
        voters = spec.voters
        self.k = 0 if voters is None else min(spec.k, len(voters.vectors))
        if voters is not None and self.k:
            self.register_buffer("voters", torch.from_numpy(np.ascontiguousarray(voters.vectors, np.float32)))
            self.register_buffer("votes", torch.from_numpy((voters.votes * voters.voting).astype(np.float32)))
            self.register_buffer("voting", torch.from_numpy(voters.voting.astype(np.float32)))
            self.register_buffer("examples", torch.from_numpy(voters.examples.astype(np.bool_)))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.tower(images).float()
        e = features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)
        z = (e @ self.weights.T + self.bias) / self.temperature
        if self.mutually_exclusive:
            scores = torch.softmax(z, dim=1)
        else:
            scores = torch.sigmoid(z.clamp(-60.0, 60.0))
        nearest = torch.full((e.shape[0],), NO_EXAMPLE, dtype=e.dtype)
        if self.k:
            sims, rows = (e @ self.voters.T).topk(self.k, dim=1)
            w = torch.exp(self.sharpness * (sims.clamp(-1.0, 1.0) - 1.0)).unsqueeze(2)  # [n, k, 1]
            votes = (w * self.votes[rows]).sum(dim=1)  # votes already zero where a row does not vote
            weight = (w * self.voting[rows]).sum(dim=1)
            scores = (self.head_weight * scores + votes) / (self.head_weight + weight)
            nearest = torch.where(self.examples[rows], sims, torch.full_like(sims, NO_EXAMPLE)).max(dim=1).values
        return scores.clamp(0.0, 1.0), nearest, e


def write_onnx(graph: ScoringGraph, example_shape: tuple[int, ...], path: Path) -> None:
    """The graph as ONNX with a dynamic batch dimension (TorchScript exporter: no onnxscript needed).
    Its input is `images` [n, 3, size, size], or `features` [n, dim] for a head graph (tower = Identity)."""
    graph.eval()
    example = torch.zeros((2, *example_shape[1:]), dtype=torch.float32)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    # CLIP's attention would take torch's fused fast path, an operator ONNX has no translation for.
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        _export(graph, example, path)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def _export(graph: ScoringGraph, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes are not the user's
        name = "images" if example.dim() == 4 else "features"
        torch.onnx.export(graph, (example,), str(path), dynamo=False, opset_version=OPSET,
                          input_names=[name], output_names=["scores", "nearest_example", "embedding"],
                          dynamic_axes={name: {0: "n"}, "scores": {0: "n"}, "nearest_example": {0: "n"},
                                        "embedding": {0: "n"}})


def write_openvino(onnx_path: Path, xml_path: Path) -> None:
    """OpenVINO IR converted from the ONNX graph, weights kept fp32 (the device picks its precision)."""
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)


def run_torch(graph: ScoringGraph, arrays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.inference_mode():
        scores, nearest, _ = graph(torch.from_numpy(arrays))
    return scores.numpy(), nearest.numpy()
