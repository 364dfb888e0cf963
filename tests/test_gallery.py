"""1:N galleries (pose3dfr.inference.gallery) and photos enrolled and searched through a Verifier
(pose3dfr.inference.identify): round trip, checkpoint versioning, corrupt files, approximate indexes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pose3dfr.errors import GalleryError
from pose3dfr.inference.gallery import Gallery
from pose3dfr.inference.gallery_files import INDEX_FILE, META_FILE, IndexConfig
from pose3dfr.inference.identify import build_gallery, enrol_photos, in_use, load_gallery, new_gallery, search_photo
from pose3dfr.inference.verifier import Verifier


@pytest.fixture(scope="module")
def built(default_verifier, people_folder):
    return build_gallery(default_verifier, people_folder)


def _random_gallery(n: int = 300, kind: str = "flat", seed: int = 0) -> tuple[Gallery, np.ndarray]:
    vectors = np.random.default_rng(seed).standard_normal((n, 32)).astype(np.float32)
    gallery = Gallery.from_embeddings(vectors, [f"p{i}" for i in range(n)], checkpoint="test",
                                      weights_sha256="ab" * 32, config=IndexConfig(kind=kind))
    return gallery, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_build_lists_failures_and_search_finds_the_person(built, default_verifier, photos_dir):
    gallery, report = built
    assert report.added == {"obama": 2, "biden": 1, "collins": 1}
    assert {f.identity for f in report.failures} == {"blank", "empty"}
    assert all(f.reason for f in report.failures)
    result = search_photo(gallery, default_verifier, photos_dir / "obama3.jpg", top_k=3)
    assert result.best is not None and result.best.name == "obama"
    assert [m.name for m in result.matches].count("obama") == 1  # an identity counts once, at its best template
    assert result.matches[0].score >= result.matches[1].score >= result.matches[2].score
    assert result.threshold.evidence == "real photos" and not result.matches[1].match
    assert result.probe_yaw is not None


def test_save_load_add_remove_round_trip(built, default_verifier, photos_dir, tmp_path):
    gallery, _ = built
    gallery.save(tmp_path / "g")
    loaded = load_gallery(tmp_path / "g", default_verifier)
    assert loaded.names == gallery.names and len(loaded) == len(gallery)
    probe = search_photo(loaded, default_verifier, photos_dir / "obama3.jpg", top_k=4)
    assert [m.name for m in probe.matches] == [
        m.name for m in search_photo(gallery, default_verifier, photos_dir / "obama3.jpg", top_k=4).matches]
    assert loaded.remove("obama") == 2
    report = enrol_photos(loaded, default_verifier, [("barack", photos_dir / "obama2.jpg")])
    assert report.added == {"barack": 1}
    loaded.save(tmp_path / "g")
    again = load_gallery(tmp_path / "g", default_verifier)
    assert "obama" not in again.names and "barack" in again.names
    assert search_photo(again, default_verifier, photos_dir / "obama3.jpg", top_k=1).matches[0].name == "barack"
    with pytest.raises(GalleryError, match="not in the gallery"):
        again.remove("obama")


def test_no_one_in_the_gallery(default_verifier, photos_dir, tmp_path):
    gallery = new_gallery(default_verifier)
    enrol_photos(gallery, default_verifier, [("biden", photos_dir / "biden.jpg")])
    result = search_photo(gallery, default_verifier, photos_dir / "obama.jpg")
    assert result.best is None and not result.matches[0].match
    assert result.matches[0].score < result.threshold.value


def test_checkpoint_mismatch_is_refused(built, tmp_path):
    gallery, _ = built
    gallery.save(tmp_path / "g")
    other = Verifier.from_pretrained("dlib-pretrained")
    with pytest.raises(GalleryError, match="built with checkpoint 'default'"):
        load_gallery(tmp_path / "g", other)
    with pytest.raises(GalleryError, match="built with checkpoint"):
        gallery.check_checkpoint(*in_use(other))


def _corrupt_cases(folder):
    index, meta_path = folder / INDEX_FILE, folder / META_FILE
    meta = json.loads(meta_path.read_text())
    data = index.read_bytes()

    def flip():
        index.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])

    def truncate():
        index.write_bytes(data[:-10])

    def garbage_with_matching_digest():  # passes the sha256 check: FAISS's reader must still refuse it
        import hashlib

        junk = b"\x00" * len(data)
        index.write_bytes(junk)
        meta_path.write_text(json.dumps({**meta, "index_sha256": hashlib.sha256(junk).hexdigest()}))

    def bad_json():
        meta_path.write_text(meta_path.read_text()[:-20])

    def bad_entries():
        meta_path.write_text(json.dumps({**meta, "entries": {**meta["entries"], "names": meta["entries"]["names"][:-1]}}))

    def missing_index():
        index.unlink()

    return [(flip, "sha256"), (truncate, "truncated"), (garbage_with_matching_digest, "not a FAISS index"),
            (bad_json, "not valid JSON"), (bad_entries, "malformed"), (missing_index, "not found")]


@pytest.mark.parametrize("case", range(6))
def test_corrupt_gallery_is_refused(tmp_path, case):
    gallery, _ = _random_gallery(50)
    folder = gallery.save(tmp_path / "g")
    corrupt, message = _corrupt_cases(folder)[case]
    corrupt()
    with pytest.raises(GalleryError, match=message):
        Gallery.load(folder)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes_search_add_remove_save(kind, tmp_path):
    gallery, vectors = _random_gallery(300, kind)
    top = gallery.search(vectors[:20], top_k=1)
    assert np.mean([r[0].name == f"p{i}" for i, r in enumerate(top)]) >= 0.9
    assert gallery.remove("p0") == 1
    assert all(m.name != "p0" for m in gallery.search(vectors[:1], top_k=5)[0])
    assert gallery.search(vectors[1:2], top_k=1)[0][0].name == "p1"  # remaining ids keep their names
    gallery.add_embeddings(vectors[:1], ["again"])
    loaded = Gallery.load(gallery.save(tmp_path / kind))
    assert loaded.config.kind == kind and len(loaded) == 300
    assert loaded.search(vectors[:1], top_k=1)[0][0].name == "again"


def test_exact_search_matches_brute_force():
    gallery, vectors = _random_gallery(200)
    query = vectors[:3] + 0.1
    ranked = gallery.search(query, top_k=5)
    scores = (query / np.linalg.norm(query, axis=1, keepdims=True)) @ vectors.T
    for row, result in zip(scores, ranked):
        assert [m.name for m in result] == [f"p{i}" for i in np.argsort(-row)[:5]]
        assert np.allclose([m.score for m in result], np.sort(row)[::-1][:5], atol=1e-5)


def test_bad_inputs_are_refused():
    gallery, vectors = _random_gallery(10)
    with pytest.raises(GalleryError, match="N x 32"):
        gallery.add_embeddings(np.ones((2, 16), np.float32), ["a", "b"])
    with pytest.raises(GalleryError, match="finite"):
        gallery.add_embeddings(np.full((1, 32), np.nan, np.float32), ["a"])
    with pytest.raises(GalleryError, match="top_k"):
        gallery.search(vectors[:1], top_k=0)
    with pytest.raises(GalleryError, match="index kind"):
        IndexConfig(kind="lsh").validate()


# ---------------------------------------------------------------------- certified exact search (int8 pre-scan)
SCAN_CONFIG = IndexConfig(exact_min_size=1000, exact_candidates=16)  # small K' so near-duplicates force the fallback


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _clustered(identities: int, per_identity: int, spread: float, seed: int) -> np.ndarray:
    """identities x per_identity near-duplicate templates (noise `spread` around each identity's centre)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((identities, 1, 128))
    return _unit((centres + spread * rng.standard_normal((identities, per_identity, 128))).reshape(-1, 128))


def _assert_exact(gallery: Gallery, vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int = 10) -> None:
    """The certified search's top-k templates equal brute-force numpy's (ids, and scores to float32 rounding)."""
    scores, found = gallery._top_templates(queries, k)
    exact = queries @ vectors.T  # Q x N
    for row, got_ids, got_scores in zip(exact, found, scores):
        order = np.argsort(-row, kind="stable")[:k]
        assert np.allclose(got_scores, row[order], atol=1e-5)
        assert set(got_ids.tolist()) == set(ids[order].tolist()) or np.isclose(row[order[-1]], row[order[-2]])


@pytest.mark.parametrize("data", ["random", "clustered"])
def test_certified_search_equals_brute_force_after_add_and_remove(data):
    rng = np.random.default_rng(1)
    if data == "random":
        vectors = _unit(rng.standard_normal((20_000, 128)))
    else:
        vectors = _clustered(500, 40, 0.05, seed=2)  # 40 near-duplicates per identity: many close candidates
    names = [f"p{i // 40}" for i in range(len(vectors))]
    gallery = Gallery.from_embeddings(vectors[:15_000], names[:15_000], checkpoint="test", weights_sha256="ab" * 32,
                                      config=SCAN_CONFIG)
    assert gallery._scan is not None
    queries = _unit(vectors[rng.choice(15_000, 20)] + 0.05 * rng.standard_normal((20, 128)))
    _assert_exact(gallery, vectors[:15_000], np.arange(15_000), queries)
    store = gallery._flat_rows()
    assert max(gallery._scan.search(store, q, 10).candidates for q in queries) > SCAN_CONFIG.exact_candidates or \
        data == "random"  # near-duplicates need more than K' candidates: the fallback ran and stayed exact
    gallery.add_embeddings(vectors[15_000:], names[15_000:])  # goes to the tail block
    assert gallery._scan._tail is not None or data == "clustered"  # clustered: new values beyond the range: re-coded
    _assert_exact(gallery, vectors, np.arange(len(vectors)), queries)
    gallery.remove("p3")
    keep = np.array([n != "p3" for n in names])
    _assert_exact(gallery, vectors[keep], np.arange(len(vectors))[keep], queries)
    ranked = gallery.search(queries[:3], top_k=5)  # identity-level answer over the certified templates
    exact = queries[:3] @ vectors[keep].T
    kept_names = np.array(names)[keep]
    for row, result in zip(exact, ranked):
        best: dict[str, float] = {}
        for i in np.argsort(-row):
            best.setdefault(kept_names[i], row[i])
            if len(best) == 5:
                break
        assert [m.name for m in result] == list(best)


def test_certified_bound_covers_the_reconstruction_error():
    from pose3dfr.inference.certified_search import CertifiedSearch

    vectors = _unit(np.random.default_rng(3).standard_normal((5_000, 128)))
    scan = CertifiedSearch(candidates=16)
    scan.rebuild(vectors)
    codes = np.clip(np.rint(vectors.astype(np.float64) * scan.scale), -127, 127)
    errors = np.linalg.norm(vectors - codes / scan.scale, axis=1)
    assert errors.max() <= scan.error + 1e-12 and scan.error > 0
    assert scan.error <= np.sqrt(128) * 0.5 / scan.scale  # never above half a code step per component
    extra = _unit(np.random.default_rng(4).standard_normal((100, 128))) * 1.0
    extra[0, :] = 0.0
    extra[0, 0] = 1.0  # a component beyond the fitted code range: the codes are re-fitted, the bound still holds
    store = np.concatenate([vectors, extra])
    scan.extend(store)
    codes = np.clip(np.rint(store.astype(np.float64) * scan.scale), -127, 127)
    assert np.linalg.norm(store - codes / scan.scale, axis=1).max() <= scan.error + 1e-12
    top = scan.search(store, store[5_000], 10)
    assert top.rows[0] == 5_000 and np.isclose(top.scores[0], 1.0, atol=1e-6)


def test_certified_gallery_saves_and_loads(tmp_path):
    vectors = _unit(np.random.default_rng(5).standard_normal((2_000, 128)))
    gallery = Gallery.from_embeddings(vectors, [f"p{i}" for i in range(2_000)], checkpoint="test",
                                      weights_sha256="ab" * 32, config=SCAN_CONFIG)
    loaded = Gallery.load(gallery.save(tmp_path / "g"))
    assert loaded._scan is not None and loaded.config.exact_min_size == 1000
    _assert_exact(loaded, vectors, np.arange(2_000), vectors[:5])
    small = Gallery.from_embeddings(vectors[:500], [f"p{i}" for i in range(500)], checkpoint="test",
                                    weights_sha256="ab" * 32, config=SCAN_CONFIG)
    assert small._scan is None  # below exact_min_size: the plain flat scan
