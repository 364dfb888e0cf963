"""ONNX export of the 2D embedding network (`pose3dfr export`; run by onnx_runtime.py, the Verifier's
backend="onnx").

    images B x 3 x S x S float32 in [0, 1]  ->  embeddings B x D (unit rows), heatmaps B x H_F x W_F

The batch dimension is dynamic (named "batch"). `export_onnx` writes OUT.onnx and its record OUT.json beside
it (onnx_runtime.write_record: checkpoint name, weights sha256, the .onnx file's sha256, shapes); tensors are
never stored as external data.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping

from pose3dfr.inference.onnx_runtime import INPUT_NAME, OUTPUT_NAMES, write_record

OPSET = 18  # torch.onnx's default opset in torch 2.x; onnxruntime >= 1.16 runs it
MAX_BATCH = 4096  # upper bound of the exported dynamic batch dimension (torch.export asks for one)


def _network(model):
    """The 2D embedding path of a Pose3DFR model as a module returning plain tensors (what ONNX exports)."""
    import torch

    class EmbeddingNetwork(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, images: torch.Tensor):  # B x 3 x S x S -> (B x D, B x H_F x W_F)
            out = self.inner.embed(images)
            return out.embeddings, out.heatmaps

    return EmbeddingNetwork(model).eval()


def onnx_bytes(model) -> bytes:
    """The serialized ONNX model of `model`'s 2D embedding network, dynamic batch."""
    with tempfile.TemporaryDirectory() as tmp:  # the exporter writes to a path (a BytesIO is deprecated)
        path = Path(tmp) / "model.onnx"
        _export(model, path)
        return path.read_bytes()


def _export(model, path: Path) -> None:
    import torch

    size = int(model.backbone.input_size)
    example = torch.rand(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    registry_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry_log.level
    registry_log.setLevel(logging.ERROR)  # it notes that torchvision's ops are absent: none is used here
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.export's own deprecation notes
            torch.onnx.export(_network(model), (example,), str(path), input_names=[INPUT_NAME],
                              output_names=list(OUTPUT_NAMES), opset_version=OPSET, dynamo=True,
                              dynamic_shapes={"images": {0: batch}}, verbose=False, external_data=False)
    finally:
        registry_log.setLevel(level)


def export_onnx(model, meta: Mapping[str, Any], checkpoint: str, out: str | Path) -> Path:
    """Write `out` (.onnx) and its .json sidecar; returns the .onnx path."""
    out = Path(out)
    if out.suffix != ".onnx":
        out = out.with_name(out.name + ".onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    data = onnx_bytes(model)
    out.write_bytes(data)
    write_record(out, data, checkpoint, meta.get("weights_sha256"), int(model.backbone.input_size), OPSET)
    return out
