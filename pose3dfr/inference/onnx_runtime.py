"""The onnxruntime runner of an exported embedding network (the Verifier's backend="onnx") and the record beside
each exported file (OUT.json: written by `write_record` when onnx_export.py exports, read by `load_onnx`: this
module is the one owner of that format).

`load_onnx` checks both digests of the record before onnxruntime's C++ parser sees the file, so a corrupt file,
or one exported from another checkpoint, is refused unread. Every model onnxruntime is given must hold all its
tensors inline: a tensor stored as external data names a file onnxruntime would read (any file under the
working folder) and return as weights, and the record's sha256 does not help (whoever writes the model writes
the record), so such a model is refused before loading.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from pose3dfr.errors import OnnxModelError

FORMAT = 1
INPUT_NAME = "images"
OUTPUT_NAMES = ("embeddings", "heatmaps")


def write_record(path: Path, data: bytes, checkpoint: str, weights_sha256: str | None, input_size: int,
                 opset: int) -> Path:
    """Write the record (.json beside the .onnx `path`) of an exported network's bytes `data`; returns its path."""
    record = {"format": FORMAT, "checkpoint": checkpoint, "weights_sha256": weights_sha256,
              "onnx_sha256": hashlib.sha256(data).hexdigest(), "onnx_bytes": len(data), "opset": opset,
              "input": [INPUT_NAME, "batch", 3, input_size, input_size], "outputs": list(OUTPUT_NAMES)}
    record_path = path.with_suffix(".json")
    record_path.write_text(json.dumps(record, indent=2))
    return record_path


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
