"""ONNX export of the 2D embedding network and its onnxruntime runner (the Verifier's backend="onnx").

    images B x 3 x S x S float32 in [0, 1]  ->  embeddings B x D (unit rows), heatmaps B x H_F x W_F

The batch dimension is dynamic (named "batch"). `export_onnx` writes OUT.onnx and OUT.json beside it (checkpoint name,
weights sha256, the .onnx file's sha256, shapes); `load_onnx` checks both digests before onnxruntime's C++
parser sees the file, so a corrupt file, or one exported from another checkpoint, is refused unread.
Every model onnxruntime is given must hold all its tensors inline: a tensor stored as external data names a
file onnxruntime would read (any file under the working folder) and return as weights, and the sidecar's
sha256 does not help (whoever writes the model writes the sidecar), so such a model is refused before loading.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from pose3dfr.errors import OnnxModelError

FORMAT = 1
OPSET = 18  # torch.onnx's default opset in torch 2.x; onnxruntime >= 1.16 runs it
MAX_BATCH = 4096  # upper bound of the exported dynamic batch dimension (torch.export asks for one)
INPUT_NAME = "images"
OUTPUT_NAMES = ("embeddings", "heatmaps")


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
    sidecar = {"format": FORMAT, "checkpoint": checkpoint, "weights_sha256": meta.get("weights_sha256"),
               "onnx_sha256": hashlib.sha256(data).hexdigest(), "onnx_bytes": len(data), "opset": OPSET,
               "input": [INPUT_NAME, "batch", 3, int(model.backbone.input_size), int(model.backbone.input_size)],
               "outputs": list(OUTPUT_NAMES)}
    out.with_suffix(".json").write_text(json.dumps(sidecar, indent=2))
    return out


def load_onnx(path: str | Path, weights_sha256: str | None, threads: int | None = None) -> "OnnxEmbedder":
    """The runner of an exported file, after checking its sidecar: same bytes, same checkpoint weights."""
    path = Path(path)
    sidecar_path = path.with_suffix(".json")
    if not path.is_file() or not sidecar_path.is_file():
        raise OnnxModelError(f"{path.name}: exported model not found (needs {path.name} and {sidecar_path.name})")
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        raise OnnxModelError(f"{sidecar_path.name}: not valid JSON (corrupt or truncated)") from None
    if not isinstance(sidecar, dict) or sidecar.get("format") != FORMAT or not isinstance(sidecar.get("onnx_sha256"), str):
        raise OnnxModelError(f"{sidecar_path.name}: not a pose3dfr ONNX export record")
    if sidecar.get("weights_sha256") != weights_sha256:
        raise OnnxModelError(f"{path.name}: exported from checkpoint {sidecar.get('checkpoint')!r}, whose weights differ "
                             "from the checkpoint in use; export it again from this checkpoint")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sidecar["onnx_sha256"]:
        raise OnnxModelError(f"{path.name}: sha256 does not match {sidecar_path.name} (corrupt or modified)")
    return OnnxEmbedder(data, threads, path.name)


def refuse_external_data(model: bytes, name: str = "the ONNX model") -> None:
    """OnnxModelError if any tensor of the serialized model (initializers, sparse initializers, constants and
    attributes, in subgraphs and functions too) is stored outside the file (data_location EXTERNAL or
    external_data entries): onnxruntime would read the file it names. Our exports never write external data."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.ModelProto.FromString(model)
    except (DecodeError, RuntimeError, ValueError):
        raise OnnxModelError(f"{name}: not a readable ONNX model") from None
    for tensor in _all_tensors(proto):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            raise OnnxModelError(f"{name}: tensor {tensor.name[:40]!r} is stored as external data (a file "
                                 "outside the model); only self-contained models are loaded")


def _all_tensors(proto) -> Iterator[Any]:
    """Every TensorProto of a ModelProto: the graph, its subgraphs (If/Loop/Scan bodies), local functions and
    training-info graphs, with the values and indices of sparse tensors."""
    graphs = [proto.graph] + [g for info in proto.training_info for g in (info.initialization, info.algorithm)]
    nodes = [node for function in proto.functions for node in function.node]
    while graphs or nodes:
        while graphs:
            graph = graphs.pop()
            yield from graph.initializer
            yield from _sparse_parts(graph.sparse_initializer)
            nodes.extend(graph.node)
        while nodes:
            for attribute in nodes.pop().attribute:
                if attribute.HasField("t"):
                    yield attribute.t
                yield from attribute.tensors
                if attribute.HasField("sparse_tensor"):
                    yield from _sparse_parts([attribute.sparse_tensor])
                yield from _sparse_parts(attribute.sparse_tensors)
                if attribute.HasField("g"):
                    graphs.append(attribute.g)
                graphs.extend(attribute.graphs)


def _sparse_parts(sparse_tensors) -> Iterator[Any]:
    for sparse in sparse_tensors:
        yield sparse.values
        yield sparse.indices


class OnnxEmbedder:
    """An onnxruntime CPU session of the exported network; `run(batch)` mirrors Pose3DFR.embed."""

    def __init__(self, model: bytes, threads: int | None = None, name: str = "the ONNX model") -> None:
        import onnxruntime as ort

        refuse_external_data(model, name)  # before onnxruntime parses it
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no graph-optimisation chatter on stderr
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception:  # onnxruntime raises its own exception types for unparsable models
            raise OnnxModelError("the ONNX model could not be loaded by onnxruntime") from None

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B x D embeddings, B x H_F x W_F heatmaps) of B x 3 x S x S float32 images in [0, 1]."""
        embeddings, heatmaps = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(images, np.float32)})
        return embeddings, heatmaps
