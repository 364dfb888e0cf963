"""The peer systems (pose3dfr.eval.peers: their pipelines and decision rules, and pose3dfr's Verifier behind the
same interface), the protocol with detection failures (pose3dfr.eval.peer_protocol) and the report
(pose3dfr.eval.peer_report), on tiny data."""

from __future__ import annotations

import numpy as np
import pytest

from pose3dfr.eval import peers as package_peers
from pose3dfr.eval.calibration import DLIB_DISTANCE_THRESHOLD, SFACE_RULE_COSINE
from pose3dfr.eval.config import EvalConfig
from pose3dfr.eval.peer_protocol import FAILURE, photo_scores, protocol_results
from pose3dfr.eval.peer_report import write_report
from pose3dfr.eval.protocol import evaluate_embeddings
from pose3dfr.eval.shipped_photos import GENUINE_PHOTO_PAIRS, IMPOSTOR_PHOTO_PAIRS

BLANK = np.full((128, 128, 3), 127, np.uint8)  # no face for any detector


def random_inputs(seed: int = 0, identities: int = 5, views: int = 8):
    """Unit embeddings with identity structure, their identities and yaws over every bin."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(identities, 16))
    ids = np.repeat(np.arange(identities), views)
    emb = centres[ids] + 0.8 * rng.normal(size=(len(ids), 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    yaws = np.tile(np.linspace(-90, 90, views), identities)
    return emb.astype(np.float32), ids, yaws


def test_protocol_agrees_with_evaluate_embeddings_without_failures():
    emb, ids, yaws = random_inputs()
    config = EvalConfig()
    ours = protocol_results(package_peers.System(), list(emb), ids, yaws, config)
    reference = evaluate_embeddings(emb, ids, yaws, config)
    for label, metrics in reference["bins"].items():
        for key in ("tar_at_far_1e-2", "tar_at_far_1e-3", "genuine_pairs", "impostor_pairs", "auc"):
            assert ours["bins"][label][key] == pytest.approx(metrics[key]), (label, key)
    assert ours["overall"]["tar_at_far_1e-2"] == pytest.approx(reference["overall"]["tar_at_far_1e-2"])
    assert all(rate == 0.0 for rate in ours[FAILURE].values())


def test_detection_failure_is_a_counted_non_match():
    emb, ids, yaws = random_inputs(1)
    embeddings = list(emb)
    probe = int(np.flatnonzero(np.abs(yaws) == 90)[0])  # a profile probe of identity 0
    embeddings[probe] = None
    results = protocol_results(package_peers.System(), embeddings, ids, yaws)
    before = protocol_results(package_peers.System(), list(emb), ids, yaws)
    profile = "[90,+)"
    assert results[FAILURE][profile] == pytest.approx(1 / (np.abs(yaws) >= 90).sum())
    assert results[FAILURE]["gallery"] == 0.0
    # Same pair counts: the failed probe's pairs stay in, as non-matches that can only lower TAR.
    assert results["bins"][profile]["genuine_pairs"] == before["bins"][profile]["genuine_pairs"]
    assert results["bins"][profile]["tar_at_far_1e-2"] <= before["bins"][profile]["tar_at_far_1e-2"]
    # Every pair of a failed gallery image is a non-match: with all gallery images failed, TAR is 0.
    gallery_failed = [None if abs(y) < 15 else e for e, y in zip(emb, yaws)]
    none_found = protocol_results(package_peers.System(), gallery_failed, ids, yaws)
    assert none_found[FAILURE]["gallery"] == 1.0
    assert none_found["overall"]["tar_at_far_1e-2"] == 0.0


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    """4 identities, 1 expression, yaws -90..90 every 45 degrees, 128 px: 20 images, plus their records."""
    from pose3dfr.data.facescape import FaceScapeMultiView
    from pose3dfr.data.synthetic import SynthConfig, generate_benchmark

    root = tmp_path_factory.mktemp("peers") / "synth"
    generate_benchmark(root, SynthConfig(identities=4, image_size=128, expressions=1, yaw_step=45, points=64))
    dataset = FaceScapeMultiView(root, num_points=0)
    return dataset, list(range(len(dataset.records)))


def _peer(key: str) -> package_peers.System:
    """A loaded peer of the package (skipped when its packages are not installed)."""
    reason = package_peers.peer_available(key)
    if reason:
        pytest.skip(reason)
    system = package_peers.make_peer(key)
    system.load()
    return system


def _ours():
    system = package_peers.make_system("ours")
    system.load()
    return system


@pytest.mark.parametrize("key", ["ours", "dlib"])
def test_system_on_tiny_set_with_a_blank_image(tiny_set, key):
    dataset, indices = tiny_set
    system = _ours() if key == "ours" else _peer(key)
    images = [dataset[i]["image"] for i in indices] + [BLANK]
    embeddings = package_peers.embed_images(system, images)
    assert embeddings[-1] is None  # the blank image: no face
    records = [dataset.records[i] for i in indices]
    ids = [r["identity"] for r in records] + [records[0]["identity"]]
    yaws = [r["yaw"] for r in records] + [0.0]  # the blank one is a frontal gallery image
    results = protocol_results(system, embeddings, ids, yaws)
    gallery = [e for e, y in zip(embeddings, yaws) if abs(y) < 15]
    assert results[FAILURE]["gallery"] == pytest.approx(sum(e is None for e in gallery) / len(gallery))
    assert results[FAILURE]["gallery"] > 0
    frontal = [e for e, r in zip(embeddings, records) if abs(r["yaw"]) < 1]
    assert sum(e is not None for e in frontal) >= len(frontal) / 2  # most rendered frontal faces are found
    assert 0.0 <= results["bins"]["[0,30)"]["tar_at_far_1e-2"] <= 1.0


def test_sface_detects_aligns_and_embeds(photos_dir):
    system = _peer("sface")
    from pose3dfr.face.image_io import load_image

    chip = system.detect_align(load_image(photos_dir / "obama.jpg"))
    assert chip.shape == (112, 112, 3)
    batch = system.embed_batch([chip, chip[:, ::-1].copy()])
    assert batch.shape == (2, 128)
    assert np.allclose(system.embed_batch([chip])[0], batch[0], atol=1e-4)  # batching does not change a descriptor
    assert system.detect_align_embed(BLANK) is None


def test_sface_feeds_the_network_rgb_as_opencvs_feature_does(photos_dir):
    """FaceRecognizerSF::feature: blobFromImage(aligned BGR, 1, 112 x 112, mean 0, swapRB=true): the net sees RGB."""
    system = _peer("sface")
    from pose3dfr.face.image_io import load_image

    chip = system.detect_align(load_image(photos_dir / "obama.jpg"))  # BGR, as alignCrop returns it
    rgb = np.ascontiguousarray(chip[:, :, ::-1]).astype(np.float32).transpose(2, 0, 1)[None]  # 1 x 3 x 112 x 112
    system.net.setInput(rgb, system.input_name)
    by_hand = system.net.forward().reshape(-1)
    assert np.allclose(system.embed_batch([chip])[0], by_hand, atol=1e-5)


@pytest.mark.parametrize("key", ["sface", "dlib"])
def test_each_peer_decides_the_shipped_photos_by_its_own_rule(photos_dir, key):
    """Obama-Obama accepted, Obama-Biden rejected, by SFace's cosine >= 0.363 and dlib's distance <= 0.6."""
    from pose3dfr.face.image_io import load_image

    photos = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]
    system = _peer(key)
    embeddings = np.stack(package_peers.embed_images(system, [load_image(photos_dir / p) for p in photos]))
    decided = system.accepts(system.similarity(embeddings, embeddings))
    assert decided[:3, :3].all() and not decided[:3, 3].any()


def test_peer_rules_at_their_published_operating_points():
    sface, dlib = package_peers.SFace(), package_peers.Dlib()
    assert sface.accepts(np.array([SFACE_RULE_COSINE, SFACE_RULE_COSINE - 1e-6, -np.inf])).tolist() == [True, False, False]
    scores = -np.array([DLIB_DISTANCE_THRESHOLD, DLIB_DISTANCE_THRESHOLD + 1e-6, np.inf])  # -distance
    assert dlib.accepts(scores).tolist() == [True, False, False]
    with pytest.raises(NotImplementedError):
        package_peers.System().accepts(np.zeros(1))


def test_peer_lists_parse_and_unknown_peers_are_refused():
    from pose3dfr.errors import Pose3DFRError

    assert package_peers.parse_peers("none") == [] and package_peers.parse_peers("") == []
    assert package_peers.parse_peers("SFace, dlib,sface") == ["sface", "dlib"]
    with pytest.raises(Pose3DFRError, match="unknown peer"):
        package_peers.parse_peers("sface,arcface")


def test_real_photo_scores_separate_obama_from_biden():
    system = _ours()
    scores = photo_scores(system)
    genuine = [scores[f"{a} vs {b}"] for a, b in GENUINE_PHOTO_PAIRS]
    impostor = [scores[f"{a} vs {b}"] for a, b in IMPOSTOR_PHOTO_PAIRS]
    assert min(genuine) > max(impostor)


def test_dlib_similarity_is_negative_euclidean_distance():
    a, b = np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([[3.0, 4.0]])
    assert np.allclose(package_peers.Dlib().similarity(a, b), [[-5.0], [-np.hypot(2, 4)]])


def test_report_has_every_table_and_the_chart(tmp_path):
    emb, ids, yaws = random_inputs(2)
    failed = list(emb)
    failed[3] = None
    accuracy = {"ours": protocol_results(package_peers.System(), list(emb), ids, yaws),
                "dlib": protocol_results(package_peers.System(), failed, ids, yaws)}
    labels = {"ours": "pose3dfr (x)", "dlib": "dlib"}
    pairs = [f"{a} vs {b}" for a, b in GENUINE_PHOTO_PAIRS + IMPOSTOR_PHOTO_PAIRS]
    photos = {"ours": dict.fromkeys(pairs, 0.9), "dlib": {**dict.fromkeys(pairs, -0.4), pairs[0]: None}}
    timing = {"median_ms": 10.0, "p95_ms": 12.0, "repeats": 3}
    speed = {k: {"label": labels[k], "load_s": s, "verify": timing, "embed_b1": timing, "embed_b32": timing,
                 "baseline_rss_mb": 50.0, "peak_rss_mb": 100.0 * s} for k, s in (("ours", 1.0), ("dlib", 2.0))}
    out = tmp_path / "bench.md"
    out.write_text("old page\n<!-- END_TO_END:START -->\nkept\n<!-- END_TO_END:END -->\n")  # another benchmark's
    written = write_report(out, "python -m benchmarks.peers --threads 2", 2, (1.0, 1.0, 1.0), accuracy, photos,
                           speed, labels, {"ours": "cosine", "dlib": "-distance"}, "tiny data")
    text = out.read_text()
    assert "old page" not in text and "kept" in text  # the page is rewritten, the other benchmarks' sections kept
    for needle in ("TAR (%) at 1% FAR", "TAR (%) at 0.1% FAR", "Detection failures", "no face", "pose3dfr (x)",
                   "2.00x", "Load average at start: 1.00", "bench_tar.html", "[90,+)",
                   "Command: `python -m benchmarks.peers --threads 2`", "2 threads per system"):
        assert needle in text, needle
    assert (tmp_path / "bench_tar.html").stat().st_size > 0
    assert all(p.exists() for p in written)
