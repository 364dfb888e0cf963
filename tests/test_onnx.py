"""ONNX export of the 2D embedding network: parity with torch on the shipped photos, dynamic batch, refusals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pose3dfr.errors import OnnxModelError, Pose3DFRError
from pose3dfr.inference.onnx_runtime import load_onnx
from pose3dfr.inference.verifier import Verifier

# One worker runs every test of the session's ONNX export (xdist --dist loadgroup): it is exported once.
pytestmark = pytest.mark.xdist_group("onnx")

PARITY = 1e-4  # the bound on |torch - onnx| per embedding component
PHOTOS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "astronaut.png")


@pytest.fixture(scope="module")
def onnx_verifier(onnx_export, default_verifier):
    return Verifier.from_pretrained("default", backend="onnx", onnx_path=onnx_export,
                                    analyzer=default_verifier.analyzer)


def test_onnx_matches_torch_on_the_shipped_photos(onnx_verifier, default_verifier, photos_dir):
    assert onnx_verifier.backend == "onnx" and default_verifier.backend == "torch"
    crops = [default_verifier._prepare(photos_dir / name).crop for name in PHOTOS]  # one detection for both
    torch_out, onnx_out = default_verifier._embed_crops(crops), onnx_verifier._embed_crops(crops)
    assert np.abs(torch_out[0] - onnx_out[0]).max() <= PARITY  # embeddings
    assert np.abs(torch_out[1] - onnx_out[1]).max() <= 1e-3  # heatmaps (normalised to [0, 1])
    single = onnx_verifier._embed_crops(crops[:1])[0]  # batch 1 through the dynamic batch dimension
    assert np.abs(single[0] - torch_out[0][0]).max() <= PARITY


def test_onnx_verify_gives_the_torch_score(onnx_verifier, default_verifier, photos_dir):
    a = default_verifier.verify(photos_dir / "obama.jpg", photos_dir / "obama2.jpg", with_points=False)
    b = onnx_verifier.verify(photos_dir / "obama.jpg", photos_dir / "obama2.jpg", with_points=False)
    assert abs(a.score - b.score) <= PARITY and a.match == b.match


def test_export_record_and_refusals(onnx_export, default_verifier, tmp_path):
    record = json.loads(onnx_export.with_suffix(".json").read_text())
    assert record["checkpoint"] == "default" and record["weights_sha256"] == default_verifier.meta["weights_sha256"]
    with pytest.raises(OnnxModelError, match="exported from checkpoint 'default'"):
        load_onnx(onnx_export, "0" * 64)
    corrupt = tmp_path / "corrupt.onnx"
    shutil.copy(onnx_export.with_suffix(".json"), corrupt.with_suffix(".json"))
    data = onnx_export.read_bytes()
    corrupt.write_bytes(data[:1000] + bytes([data[1000] ^ 1]) + data[1001:])
    with pytest.raises(OnnxModelError, match="sha256"):
        load_onnx(corrupt, record["weights_sha256"])
    with pytest.raises(OnnxModelError, match="not found"):
        load_onnx(tmp_path / "missing.onnx", record["weights_sha256"])
    with pytest.raises(Pose3DFRError, match="backend"):
        Verifier.from_pretrained("default", backend="tensorrt")


def external_data_model(location: str, length: int) -> bytes:
    """An ONNX model whose only initializer is `length` bytes of the file `location` (data_location EXTERNAL),
    returned as the "embeddings" output: what onnxruntime would read and hand back."""
    from onnx import TensorProto, helper

    tensor = TensorProto(name="stolen", data_type=TensorProto.UINT8, dims=[length],
                         data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 150, 150])
    output = helper.make_tensor_value_info("embeddings", TensorProto.UINT8, [length])
    graph = helper.make_graph([helper.make_node("Identity", ["stolen"], ["embeddings"])], "g", [images], [output],
                              initializer=[tensor])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


@pytest.mark.parametrize("location", ["secret.txt", "../../../../etc/passwd"])
def test_a_model_with_external_data_is_refused_before_onnxruntime_reads_the_file(
        default_verifier, tmp_path, monkeypatch, location):
    import hashlib

    monkeypatch.chdir(tmp_path)  # onnxruntime resolves a model-from-bytes' external data against the working folder
    (tmp_path / "secret.txt").write_bytes(b"server secret " * 8)
    data = external_data_model(location, 40)
    model = tmp_path / "models" / "evil.onnx"
    model.parent.mkdir()
    model.write_bytes(data)
    # the sidecar cannot help: whoever writes the model writes matching digests
    model.with_suffix(".json").write_text(json.dumps({
        "format": 1, "checkpoint": "default", "weights_sha256": default_verifier.meta["weights_sha256"],
        "onnx_sha256": hashlib.sha256(data).hexdigest()}))
    with pytest.raises(OnnxModelError, match="external data"):
        load_onnx(model, default_verifier.meta["weights_sha256"])
    with pytest.raises(OnnxModelError, match="external data"):
        Verifier.from_pretrained("default", backend="onnx", onnx_path=model, analyzer=default_verifier.analyzer)


def test_a_constant_inside_a_subgraph_with_external_data_is_refused():
    from onnx import TensorProto, helper

    from pose3dfr.inference.onnx_runtime import refuse_external_data

    stolen = TensorProto(name="c", data_type=TensorProto.UINT8, dims=[4], data_location=TensorProto.EXTERNAL)
    entry = stolen.external_data.add()
    entry.key, entry.value = "location", "secret.txt"
    branch = helper.make_graph([helper.make_node("Constant", [], ["y"], value=stolen)], "then", [],
                               [helper.make_tensor_value_info("y", TensorProto.UINT8, [4])])
    node = helper.make_node("If", ["cond"], ["out"], then_branch=branch, else_branch=branch)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("out", TensorProto.UINT8, [4])])
    with pytest.raises(OnnxModelError, match="external data"):
        refuse_external_data(helper.make_model(graph).SerializeToString())
    with pytest.raises(OnnxModelError, match="not a readable ONNX model"):
        refuse_external_data(b"\xff" * 64)
