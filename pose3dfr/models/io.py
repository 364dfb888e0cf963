"""Checkpoints as <stem>.safetensors (tensors) + <stem>.json (config, extra, sha256); nothing is unpickled.

The JSON records the weights file's sha256, so a truncated or altered weights file is refused with
CheckpointError before any tensor is used; and the config must build exactly the tensors the safetensors header
lists (names and shapes, compared on the meta device), so a config that would allocate more than the file holds
(e.g. num_classes=2e7: 10 GB) is refused before anything is allocated.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from pose3dfr.errors import CheckpointError, Pose3DFRError
from pose3dfr.models.config import ModelConfig
from pose3dfr.models.dlib_resnet import DLIB_RESNET_WEIGHTS, load_weights
from pose3dfr.models.factory import create_model
from pose3dfr.models.pose3dfr import Pose3DFR
from pose3dfr.models.sface import SFACE_WEIGHTS
from pose3dfr.models.sface import load_weights as load_sface_weights
from pose3dfr.paths import CHECKPOINTS_DIR

FORMAT = 1
# Fields a checkpoint written before them lacks, with the value that reproduces how it was used then.
PRE_FLIP_DEFAULTS = {"flip_average": False}
PRETRAINED_DLIB = "dlib-pretrained"  # dlib's descriptor network as is
PRETRAINED_DLIB_CALIBRATION_FILE = "dlib-pretrained.calibration.json"  # in checkpoints/, by `pose3dfr calibrate`
PRETRAINED_SFACE = "sface-pretrained"  # OpenCV Zoo's SFace as is (card: checkpoints/sface-pretrained.md)
PRETRAINED_SFACE_CALIBRATION_FILE = "sface-pretrained.calibration.json"  # render thresholds + OpenCV's real rule
# "default" is SFace as OpenCV uses it (issue 31): the only network here trained on real faces that holds up at
# large yaw on real photos, decided by OpenCV's published real-photo rule at every yaw (pose3dfr.eval.thresholds).
# Fine-tunes on renders never beat their pretrained base on real turned faces (docs/results.md, section 7).
DEFAULT_CHECKPOINT = "default"
# Largest safetensors header read (bytes): ours are about 20 KB (200 tensors); safetensors itself allows 100 MB.
MAX_HEADER_BYTES = 8 * 2**20
# Checkpoints in checkpoints/ that are not recognition models (pose3dfr.headpose): never offered as one.
AUXILIARY_CHECKPOINTS = frozenset({"headpose"})
# sha256 of the weight files shipped in checkpoints/ (the same values as assets/NOTICE.md); a shipped file
# whose bytes differ (truncated download, Git LFS pointer, tampering) is refused by check_shipped_weights.
SHIPPED_WEIGHTS_SHA256: dict[str, str] = {
    "dlib_resnet.safetensors": "89025e125720818b1ac9de2d81e2cab164fdeb1300b368c5000235b5e8244e4a",
    "headpose.safetensors": "9aaf4b93465e09dcc6b86f1973492bf54ac31d64ca695ff1bf533ebaae0ad601",
    "sface.safetensors": "86b46bd6f76deac3afba5d87f11806a70f96074fa7df398b11c1a19e02d2e510",
    "sface-guided.safetensors": "953a36359371920b75742c07af0119ae9842c1d5e5d34932a7dd7b02deed5331",
}


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def check_shipped_weights(path: str | Path) -> Path:
    """`path` if its sha256 is the one recorded for its file name in SHIPPED_WEIGHTS_SHA256, else CheckpointError."""
    path = Path(path)
    expected = SHIPPED_WEIGHTS_SHA256.get(path.name)
    if expected is None:
        raise CheckpointError(f"{path.name}: not a shipped weights file (no recorded sha256)")
    if not path.is_file():
        raise CheckpointError(f"{path}: shipped weights file not found")
    if file_sha256(path) != expected:
        raise CheckpointError(f"{path.name}: sha256 differs from the shipped file's (truncated, a Git LFS pointer, "
                              "or modified); restore it from the repository")
    return path


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """(<stem>.safetensors, <stem>.json) from the stem, the .safetensors or the .json path."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_model(model: torch.nn.Module, path_stem: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write <stem>.safetensors and <stem>.json for a Pose3DFR model; returns the .safetensors path."""
    weights, meta_path = checkpoint_paths(path_stem)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(weights), metadata={"format": str(FORMAT)})
    meta = {"format": FORMAT, "config": asdict(model.cfg), "extra": extra, "weights_sha256": file_sha256(weights)}
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True))
    return weights


def read_meta(path: str | Path) -> dict[str, Any]:
    """The checkpoint's JSON (config, extra, format, weights_sha256); CheckpointError when missing or malformed."""
    _, meta_path = checkpoint_paths(path)
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{meta_path}: checkpoint config (.json) not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{meta_path}: not a readable checkpoint config ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{meta_path}: not a pose3dfr checkpoint config of format {FORMAT}")
    return meta


def verified_weights(path: str | Path, verify: bool = True) -> tuple[Path, dict[str, Any]]:
    """(weights path, meta) of a checkpoint whose .safetensors exists and, with `verify`, has the sha256 its
    .json records; CheckpointError otherwise (a .json without a digest is refused too)."""
    weights, _ = checkpoint_paths(path)
    meta = read_meta(path)
    if not weights.is_file():
        raise CheckpointError(f"{weights}: checkpoint weights (.safetensors) not found")
    if verify and not isinstance(meta.get("weights_sha256"), str):
        raise CheckpointError(f"{weights}: its .json records no weights_sha256, so the weights cannot be checked")
    if verify and file_sha256(weights) != meta["weights_sha256"]:
        raise CheckpointError(f"{weights}: sha256 does not match its .json (truncated or modified file)")
    return weights, meta


def load_model(path: str | Path, verify: bool = True) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(model in eval mode, meta) from a checkpoint; `path` is the stem, the .safetensors or the .json."""
    weights, meta = verified_weights(path, verify)
    try:
        cfg = ModelConfig.from_dict({**PRE_FLIP_DEFAULTS, **meta["config"]})
    except (Pose3DFRError, TypeError) as exc:
        raise CheckpointError(f"{weights}: config does not build a model ({exc})") from None
    check_config_matches_weights(cfg, weights)  # before anything of the config's size is allocated
    try:
        model = Pose3DFR(cfg, load_pretrained=False)
    except Pose3DFRError as exc:
        raise CheckpointError(f"{weights}: config does not build a model ({exc})") from None
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for bad headers / short files
        raise CheckpointError(f"{weights}: not a readable safetensors file ({exc})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights}: weights do not match the config: {str(exc)[:500]}") from None
    return model.eval(), meta


def safetensors_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """{tensor name: shape} from a safetensors file's header (read alone, at most MAX_HEADER_BYTES); CheckpointError
    when the header is unreadable or its tensors do not fit in the file."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        prefix = fh.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if not 0 < length <= min(MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(f"{path.name}: not a readable safetensors file (header length {length})")
        try:
            header = json.loads(fh.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise CheckpointError(f"{path.name}: not a readable safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path.name}: not a readable safetensors file (header is not a JSON object)")
    shapes: dict[str, tuple[int, ...]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape, offsets = (entry.get("shape"), entry.get("data_offsets")) if isinstance(entry, dict) else (None, None)
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)
                and isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= size - 8 - length):
            raise CheckpointError(f"{path.name}: not a readable safetensors file (bad entry for {name[:60]!r})")
        shapes[name] = tuple(shape)
    return shapes


def check_config_matches_weights(cfg: ModelConfig, weights: str | Path) -> None:
    """CheckpointError unless the model `cfg` builds has exactly the tensors (names and shapes) of the weights
    file's header. The model is built on the meta device (shapes only, no memory), so a config asking for
    billions of parameters costs nothing before it is refused."""
    weights = Path(weights)
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in Pose3DFR(cfg, load_pretrained=False).state_dict().items()}
    except (Pose3DFRError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights.name}: config does not build a model ({type(exc).__name__}: "
                              f"{str(exc)[:200]})") from None
    found = safetensors_shapes(weights)
    problems = [f"{k} is missing" for k in sorted(set(expected) - set(found))]
    problems += [f"{k} is not in the config's model" for k in sorted(set(found) - set(expected))]
    problems += [f"{k} has shape {list(found[k])} in the file but {list(expected[k])} in the config"
                 for k in sorted(set(expected) & set(found)) if expected[k] != found[k]]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(f"{weights.name}: weights do not match the config: {'; '.join(problems[:3])}{more}")


def available_checkpoints(directory: Path = CHECKPOINTS_DIR) -> list[str]:
    """Names load_checkpoint accepts without a path: the built-ins and each <name>.safetensors with its .json."""
    found = sorted(p.stem for p in directory.glob("*.safetensors")
                   if p.with_suffix(".json").is_file() and p.stem not in AUXILIARY_CHECKPOINTS)
    builtins = [DEFAULT_CHECKPOINT, PRETRAINED_SFACE, PRETRAINED_DLIB]
    return builtins + [n for n in found if n not in builtins]


def load_checkpoint(name_or_path: str | Path) -> tuple[torch.nn.Module, dict[str, Any], str]:
    """(model in eval mode, meta, display name) for a checkpoint name in checkpoints/, a path, or a built-in.

    "default" and "sface-pretrained" are OpenCV Zoo's SFace network as is (2D only, its embedding is SFace's
    fc1, its faces aligned on YuNet's keypoints as OpenCV aligns them); "dlib-pretrained" is the pretrained dlib
    network (2D only, its embedding is dlib's descriptor).
    """
    text = str(name_or_path)
    if text == PRETRAINED_DLIB:
        return (*pretrained_dlib_model(), PRETRAINED_DLIB)
    if text in (PRETRAINED_SFACE, DEFAULT_CHECKPOINT):
        return (*pretrained_sface_model(), text)
    stem = _resolve_stem(text)
    if stem is None:
        raise CheckpointError(f"{text}: no such checkpoint (looked for <name>.safetensors + <name>.json in "
                              f"{CHECKPOINTS_DIR}); available: {', '.join(available_checkpoints())}")
    model, meta = load_model(stem)
    return model, meta, stem.name


def _resolve_stem(text: str) -> Path | None:
    """The `<stem>` of `<stem>.safetensors` + `<stem>.json` a name or path refers to, or None."""
    path = Path(text)
    candidates = [path.with_suffix("")] if path.suffix in (".safetensors", ".json") else []
    candidates += [path, CHECKPOINTS_DIR / text]
    for stem in candidates:
        if stem.with_name(stem.name + ".safetensors").is_file():
            return stem
    if path.suffix in (".safetensors", ".json") or path.parent != Path("."):
        raise CheckpointError(f"{path.name}: checkpoint file not found ({text})")
    return None


def pretrained_dlib_model() -> tuple[torch.nn.Module, dict[str, Any]]:
    """Pose3DFR around the pretrained dlib backbone with the 3D branch off: its embedding is dlib's descriptor.

    No attention module either (the "baseline-2d" config): an untrained JAM with gamma 0 would leave the
    embedding unchanged but make the heatmap random; without it the heatmap is the trunk's feature norm.
    """
    if not DLIB_RESNET_WEIGHTS.is_file():
        raise CheckpointError(f"{DLIB_RESNET_WEIGHTS.name}: the pretrained dlib weights are missing "
                              f"(expected in {DLIB_RESNET_WEIGHTS.parent}; see `pose3dfr convert-dlib`)")
    model = create_model("baseline-2d", backbone="dlib_resnet", flip_average=False)  # dlib's descriptor, as dlib has it
    model.backbone.load_state_dict(load_weights(check_shipped_weights(DLIB_RESNET_WEIGHTS)))
    # its thresholds live in a `pose3dfr calibrate` file beside the checkpoints (read by pose3dfr.eval.calibration)
    extra: dict[str, Any] = {"pretrained": True, "calibration_file": PRETRAINED_DLIB_CALIBRATION_FILE}
    # the shipped file's sha256 (just checked) versions what is built with it, e.g. 1:N galleries
    return model.eval(), {"config": asdict(model.cfg), "extra": extra,
                          "weights_sha256": SHIPPED_WEIGHTS_SHA256[DLIB_RESNET_WEIGHTS.name]}




def pretrained_sface_model() -> tuple[torch.nn.Module, dict[str, Any]]:
    """Pose3DFR around the pretrained SFace backbone, no attention, no 3D branch, no mirror averaging, faces aligned
    on YuNet's five keypoints: its embedding is SFace's own, as OpenCV computes it (FaceRecognizerSF.alignCrop +
    feature, unit-normalised), so OpenCV's published real-photo rule applies (pose3dfr.eval.calibration)."""
    if not SFACE_WEIGHTS.is_file():
        raise CheckpointError(f"{SFACE_WEIGHTS.name}: the pretrained SFace weights are missing "
                              f"(expected in {SFACE_WEIGHTS.parent}; see `pose3dfr convert-sface`)")
    model = create_model("baseline-2d", backbone="sface", flip_average=False, alignment="keypoints")
    model.backbone.load_state_dict(load_sface_weights(check_shipped_weights(SFACE_WEIGHTS)))
    # "pretrained": the network as published (its rule holds); its render thresholds live in a calibrate file
    extra: dict[str, Any] = {"pretrained": True, "calibration_file": PRETRAINED_SFACE_CALIBRATION_FILE}
    return model.eval(), {"config": asdict(model.cfg), "extra": extra,
                          "weights_sha256": SHIPPED_WEIGHTS_SHA256[SFACE_WEIGHTS.name]}
