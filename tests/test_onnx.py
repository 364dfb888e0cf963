"""ONNX export of the 2D embedding network: parity with torch on the shipped photos, dynamic batch, refusals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pose3dfr.errors import OnnxModelError, Pose3DFRError
from pose3dfr.inference.onnx_export import load_onnx
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
