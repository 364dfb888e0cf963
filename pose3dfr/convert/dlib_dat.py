"""Pure-Python reader of dlib's binary DNN serialisation (`.dat`), enough to read the face descriptor
network dlib_face_recognition_resnet_model_v1.dat without importing dlib.

Format (dlib/serialize.h, dlib/dnn/core.h, layers.h, tensor.h):

* integer: a control byte (bit 7 = negative, low 4 bits = byte count) then the little-endian magnitude.
* float: an int64 mantissa then an int16 exponent (value = m * 2**e).
* string: an integer length then the bytes; bool: one ASCII byte '0' or '1'.
* tensor: version (2: raw little-endian float32; 1: dlib floats), then n, k, nr, nc, then the n*k*nr*nc values.
* alias tensor: version 1 then n, k, nr, nc (a view into a layer's flat params).

A network is written from the output end: the loss layer, then each wrapper's version number (layers,
tags and skips, outermost first), then the input layer, then each computational layer's record from the
input end (its details, three bools and its cleared tensors). Tags and skips leave only their version
number, so this module returns the flat list of layer records; the wiring comes from dlib's C++ definition.
"""

from __future__ import annotations

import bz2
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pose3dfr.errors import CheckpointError

# Largest .dat we read (the face descriptor network is 22 MB; larger files are not this network).
MAX_DAT_BYTES = 256 * 1024 * 1024
# Special exponents dlib's float_details uses for infinities and NaN.
_INF_EXPONENTS = {32000: float("inf"), 32001: float("-inf"), 32002: float("nan")}


@dataclass
class DlibLayer:
    """One computational layer's record: its dlib type name (e.g. "con_4") and its decoded fields."""

    kind: str
    fields: dict = field(default_factory=dict)


@dataclass
class DlibNet:
    """A deserialised dlib network: loss details, wrapper versions (output end first), input layer, and layer
    records in input-to-output order."""

    loss: DlibLayer
    wrapper_versions: list[int]
    input: DlibLayer
    layers: list[DlibLayer]


class DatReader:
    """A cursor over the bytes of a .dat file; every read checks bounds and raises CheckpointError."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.name = name
        self.pos = 0

    def fail(self, message: str) -> CheckpointError:
        return CheckpointError(f"{self.name}: not a valid dlib network file: {message} (at byte {self.pos})")

    def take(self, count: int, what: str) -> bytes:
        if count < 0 or self.pos + count > len(self.data):
            raise CheckpointError(f"{self.name}: truncated dlib network file: needed {count} bytes for {what} "
                                  f"at byte {self.pos}, file has {len(self.data)}")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def read_int(self, what: str = "an integer", max_bytes: int = 8) -> int:
        control = self.take(1, what)[0]
        size = control & 0x0F
        if size > max_bytes or control & 0x70:
            self.pos -= 1
            raise self.fail(f"bad integer control byte 0x{control:02x} for {what}")
        value = int.from_bytes(self.take(size, what), "little")
        return -value if control & 0x80 else value

    def read_float(self, what: str = "a float") -> float:
        mantissa = self.read_int(what, max_bytes=8)
        exponent = self.read_int(what, max_bytes=2)
        if exponent in _INF_EXPONENTS:
            return _INF_EXPONENTS[exponent]
        return float(mantissa) * 2.0 ** exponent

    def read_bool(self, what: str = "a bool") -> bool:
        byte = self.take(1, what)
        if byte not in (b"0", b"1"):
            self.pos -= 1
            raise self.fail(f"bad bool byte {byte!r} for {what}")
        return byte == b"1"

    def read_string(self, what: str = "a string", max_len: int = 256) -> str:
        length = self.read_int(what)
        if not 0 <= length <= max_len:
            raise self.fail(f"implausible string length {length} for {what}")
        raw = self.take(length, what)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.fail(f"non-ASCII string for {what}") from None

    def peek_string(self) -> str | None:
        """The string at the cursor if one plausibly starts there (cursor unchanged), else None."""
        start = self.pos
        try:
            text = self.read_string(max_len=64)
        except CheckpointError:
            text = None
        self.pos = start
        return text if text and text.isprintable() else None

    def read_dims(self, what: str) -> tuple[int, int, int, int]:
        dims = tuple(self.read_int(f"{what} shape") for _ in range(4))
        if any(d < 0 for d in dims):
            raise self.fail(f"negative tensor shape {dims} for {what}")
        return dims  # type: ignore[return-value]

    def read_tensor(self, what: str = "a tensor") -> np.ndarray:
        version = self.read_int(f"{what} version")
        dims = self.read_dims(what)
        count = int(np.prod(dims, dtype=np.int64))
        if version == 2:
            raw = self.take(4 * count, f"{what} data ({count} floats)")
            values = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        elif version == 1:
            values = np.array([self.read_float(what) for _ in range(count)], dtype=np.float32)
        else:
            raise self.fail(f"unsupported tensor version {version} for {what}")
        return values.reshape(dims)

    def read_alias(self, what: str) -> tuple[int, int, int, int]:
        version = self.read_int(f"{what} version")
        if version != 1:
            raise self.fail(f"unsupported alias tensor version {version} for {what}")
        return self.read_dims(what)


def read_dlib_dat(path: str | Path) -> DlibNet:
    """Deserialise a dlib DNN .dat (plain or .bz2-compressed) into its layer records; CheckpointError if bad."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such dlib network file")
    size = path.stat().st_size
    if size > MAX_DAT_BYTES:
        raise CheckpointError(f"{path.name}: {size} bytes is larger than any dlib face network ({MAX_DAT_BYTES})")
    data = path.read_bytes()
    if data[:3] == b"BZh":
        try:
            data = bz2.BZ2Decompressor().decompress(data, max_length=MAX_DAT_BYTES + 1)
        except (OSError, ValueError, EOFError) as exc:
            raise CheckpointError(f"{path.name}: corrupt bz2 stream: {exc}") from None
        if len(data) > MAX_DAT_BYTES:
            raise CheckpointError(f"{path.name}: decompresses to more than {MAX_DAT_BYTES} bytes")
    return parse_dlib_net(data, path.name)


def parse_dlib_net(data: bytes, name: str = "<bytes>") -> DlibNet:
    """Parse the bytes of a dlib network written with a loss layer on top (see the module docstring)."""
    reader = DatReader(data, name)
    if reader.read_int("loss wrapper version") != 1:
        raise reader.fail("expected add_loss_layer version 1")
    loss = _read_loss(reader)
    versions = _read_wrapper_versions(reader)
    if versions[-1] not in (2, 3):
        raise reader.fail(f"unsupported innermost add_layer version {versions[-1]}")
    input_layer = _read_input(reader)
    layers = [_read_record(reader, innermost_version=versions[-1])]
    while not reader.at_end():
        layers.append(_read_record(reader, innermost_version=None))
    expected = 1 + sum(1 for v in versions[:-1] if v == 2)
    if len(layers) != expected:
        raise reader.fail(f"{len(layers)} layer records but {expected} add_layer wrappers")
    return DlibNet(loss, versions, input_layer, layers)


def _read_loss(reader: DatReader) -> DlibLayer:
    kind = reader.read_string("loss layer name")
    if kind == "loss_metric_2":
        return DlibLayer(kind, {"margin": reader.read_float("margin"), "dist_thresh": reader.read_float("dist_thresh")})
    if kind == "loss_metric_":
        return DlibLayer(kind)
    raise reader.fail(f"unsupported loss layer {kind!r} (expected loss_metric)")


def _read_wrapper_versions(reader: DatReader) -> list[int]:
    """Version numbers of the layer/tag/skip wrappers, outermost first, up to the input layer's name."""
    versions: list[int] = []
    while True:
        text = reader.peek_string()
        if text is not None and text.startswith("input"):
            return versions
        version = reader.read_int("wrapper version")
        if version not in (1, 2, 3):
            raise reader.fail(f"unexpected wrapper version {version}")
        versions.append(version)
        if len(versions) > 10_000:
            raise reader.fail("no input layer found")


def _read_input(reader: DatReader) -> DlibLayer:
    kind = reader.read_string("input layer name")
    if kind not in ("input_rgb_image_sized", "input_rgb_image"):
        raise reader.fail(f"unsupported input layer {kind!r}")
    fields = {"avg_red": reader.read_float("avg_red"), "avg_green": reader.read_float("avg_green"),
              "avg_blue": reader.read_float("avg_blue")}
    if kind == "input_rgb_image_sized":
        fields["nr"] = reader.read_int("input rows")
        fields["nc"] = reader.read_int("input columns")
    return DlibLayer(kind, fields)


def _read_record(reader: DatReader, innermost_version: int | None) -> DlibLayer:
    """One add_layer's payload: layer details, three bools, cleared tensors (and the innermost layer's extras)."""
    layer = _read_details(reader)
    for flag in ("setup_called", "gradient_input_is_stale", "output_disabled"):
        reader.read_bool(f"{layer.kind} {flag}")
    reader.read_tensor(f"{layer.kind} x_grad")
    reader.read_tensor(f"{layer.kind} cached_output")
    reader.read_tensor(f"{layer.kind} params_grad" if innermost_version is None else f"{layer.kind} grad_final")
    if innermost_version == 3:
        reader.read_int("sample_expansion_factor")
    return layer


def _read_details(reader: DatReader) -> DlibLayer:
    kind = reader.read_string("layer name")
    readers = {"con_4": _read_con, "affine_": _read_affine, "fc_2": _read_fc, "max_pool_2": _read_pool,
               "avg_pool_2": _read_pool, "relu_": lambda r: {}, "add_prev_": lambda r: {}}
    if kind not in readers:
        raise reader.fail(f"unsupported layer type {kind!r}")
    return DlibLayer(kind, readers[kind](reader))


def _read_con(reader: DatReader) -> dict:
    fields = {"params": reader.read_tensor("con_ params")}
    for key in ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"):
        fields[key] = reader.read_int(f"con_ {key}")
    fields["filters_shape"] = reader.read_alias("con_ filters")
    fields["biases_shape"] = reader.read_alias("con_ biases")
    for key in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
        reader.read_float(f"con_ {key}")
    return fields


def _read_affine(reader: DatReader) -> dict:
    return {"params": reader.read_tensor("affine_ params"), "gamma_shape": reader.read_alias("affine_ gamma"),
            "beta_shape": reader.read_alias("affine_ beta"), "mode": reader.read_int("affine_ mode")}


def _read_fc(reader: DatReader) -> dict:
    fields = {"num_outputs": reader.read_int("fc_ num_outputs"), "num_inputs": reader.read_int("fc_ num_inputs"),
              "params": reader.read_tensor("fc_ params"), "weights_shape": reader.read_alias("fc_ weights"),
              "biases_shape": reader.read_alias("fc_ biases"), "bias_mode": reader.read_int("fc_ bias mode")}
    for key in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
        reader.read_float(f"fc_ {key}")
    return fields


def _read_pool(reader: DatReader) -> dict:
    return {key: reader.read_int(f"pool {key}") for key in ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")}

