"""1:N galleries: enrolled face templates (unit embeddings) in a FAISS index, searched for the identities
closest to query embeddings, and their files. Photos are enrolled and searched through a Verifier by
pose3dfr.inference.identify; this module knows embeddings only.

    gallery = Gallery.from_embeddings(vectors, names, checkpoint="default", weights_sha256=digest)
    gallery.search(queries, top_k=5, threshold=0.4)             # best identities per query
    gallery.save("people.gallery"); Gallery.load("people.gallery", ("default", digest))

Templates are unit embeddings, so inner product = cosine (the Verifier's score). An identity's score is
its best template's. The index is exact (`IndexIDMap2(IndexFlatIP)`) by default; "hnsw" and "ivf" trade
recall for speed on very large galleries (docs/gallery.md). On disk a gallery is a folder: gallery.json
(names, photos, ids, checkpoint name + weights sha256, the index file's sha256) and index.faiss. The index
bytes are checked against the recorded sha256 before FAISS's C++ reader sees them, so a corrupt or
altered file never reaches it; nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pose3dfr.data.facescape import identity_sort_key
from pose3dfr.errors import GalleryError
from pose3dfr.inference.certified_search import CertifiedSearch
from pose3dfr.inference.gallery_files import (FORMAT, INDEX_FILE, KIND, META_FILE, IndexConfig, parse_meta,
                                              read_index_bytes, read_meta, write_atomic)

DEFAULT_TOP_K = 5


@dataclass(frozen=True)
class IdentifyMatch:
    """One gallery entry ranked against a probe."""

    name: str
    score: float
    match: bool


class Gallery:
    """Enrolled templates (unit embeddings, D float32) with each one's identity name and photo name.

    Searches may run concurrently (FAISS searches are read-only); add and remove need exclusive access.
    """

    def __init__(self, checkpoint: str, weights_sha256: str, config: IndexConfig | None = None) -> None:
        self.checkpoint = checkpoint  # display name of the checkpoint the templates come from
        self.weights_sha256 = weights_sha256  # what a gallery is versioned with: its weights' sha256
        self.config = replace(config or IndexConfig()).validate()  # a copy: the first add fills in ivf_lists
        self.dim: int | None = None  # set by the first add
        self._index = None  # faiss.IndexIDMap2 over the configured index, created by the first add
        self._scan: CertifiedSearch | None = None  # int8 pre-scan of a large "flat" gallery (None: plain scan)
        self._row_ids = np.zeros(0, np.int64)  # id of each row of the flat store, in row order
        self._entries: dict[int, tuple[str, str]] = {}  # id -> (identity name, photo name)
        self._per_name: Counter[str] = Counter()
        self._most_templates = 0  # the largest template count of any identity
        self._next_id = 0

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_embeddings(cls, embeddings: np.ndarray, names: Sequence[str], photos: Sequence[str] | None = None, *,
                        checkpoint: str, weights_sha256: str, config: IndexConfig | None = None) -> "Gallery":
        """A gallery of N x D embeddings (normalised here) with their identity names (and photo names)."""
        gallery = cls(checkpoint, weights_sha256, config)
        gallery.add_embeddings(embeddings, names, photos)
        return gallery

    # ------------------------------------------------------------------ contents
    def __len__(self) -> int:
        """Number of templates."""
        return len(self._entries)

    @property
    def names(self) -> list[str]:
        """Enrolled identity names, sorted."""
        return sorted(self._per_name, key=identity_sort_key)

    def templates(self, name: str) -> int:
        return self._per_name.get(name, 0)

    # ------------------------------------------------------------------ add / remove
    def add_embeddings(self, embeddings: np.ndarray, names: Sequence[str], photos: Sequence[str] | None = None
                       ) -> np.ndarray:
        """Add N x D embeddings under their identity names; returns their ids (int64)."""
        vectors = _unit_rows(embeddings, self.dim)
        photos = list(photos) if photos is not None else [""] * len(vectors)
        if len(names) != len(vectors) or len(photos) != len(vectors):
            raise GalleryError(f"{len(vectors)} embeddings but {len(names)} names and {len(photos)} photo names")
        for name in names:
            check_identity_name(name)
        if not len(vectors):
            return np.zeros(0, np.int64)
        if self._index is None:
            self.dim = int(vectors.shape[1])
            self._index = _new_index(self.dim, self.config, vectors)
        ids = np.arange(self._next_id, self._next_id + len(vectors), dtype=np.int64)
        self._index.add_with_ids(vectors, ids)
        for i, name, photo in zip(ids.tolist(), names, photos):
            self._entries[i] = (str(name), str(photo))
            self._per_name[str(name)] += 1
        self._next_id += len(vectors)
        self._sync_scan(appended=True)
        return ids

    def remove(self, name: str) -> int:
        """Remove every template of an identity; returns how many. GalleryError when it is not enrolled."""
        import faiss

        ids = np.array([i for i, (n, _) in self._entries.items() if n == name], dtype=np.int64)
        if not ids.size:
            raise GalleryError(f"{name!r} is not in the gallery")
        if self.config.kind != "flat":  # HNSW cannot delete; IVF under an id map deletes wrongly: rebuild
            self._rebuild_without(ids)
        else:
            self._index.remove_ids(faiss.IDSelectorBatch(ids))
        for i in ids.tolist():
            del self._entries[i]
        del self._per_name[name]
        self._sync_scan(appended=False)
        return int(ids.size)

    def _flat_rows(self) -> np.ndarray:
        """N x D float32 view of the flat store's rows (valid until the next add or remove)."""
        import faiss

        inner = faiss.downcast_index(self._index.index)
        return faiss.rev_swig_ptr(inner.get_xb(), inner.ntotal * self.dim).reshape(inner.ntotal, self.dim)

    def _sync_scan(self, appended: bool) -> None:
        """After an add, remove or load: recount, and keep the int8 pre-scan in step with the flat store."""
        import faiss

        self._most_templates = max(self._per_name.values(), default=0)  # cached: a max over 1M names costs ~10 ms
        if self.config.kind != "flat":
            return
        self._row_ids = faiss.vector_to_array(self._index.id_map)
        if len(self) < self.config.exact_min_size:
            self._scan = None
            return
        if self._scan is None:
            self._scan = CertifiedSearch(self.config.exact_candidates, self.config.exact_threads)
            self._scan.rebuild(self._flat_rows())
        elif appended:
            self._scan.extend(self._flat_rows())
        else:
            self._scan.rebuild(self._flat_rows())

    def _rebuild_without(self, ids: np.ndarray) -> None:
        """A new index of the same kind holding every template but `ids`."""
        import faiss

        inner = faiss.downcast_index(self._index.index)
        vectors = inner.reconstruct_n(0, inner.ntotal)  # N x D in insertion order
        stored = faiss.vector_to_array(self._index.id_map)  # N ids, same order
        keep = ~np.isin(stored, ids)
        self._index = _new_index(self.dim, self.config, vectors[keep] if keep.any() else vectors)
        if keep.any():
            self._index.add_with_ids(np.ascontiguousarray(vectors[keep]), stored[keep])

    # ------------------------------------------------------------------ search
    def search(self, queries: np.ndarray, top_k: int = DEFAULT_TOP_K, threshold: float = -1.0, *,
               routed: bool = False) -> list[list[IdentifyMatch]]:
        """Top-K identities (best template's cosine, best first) for each of Q x D query embeddings.

        `routed`: the queries are probe forms of a frontal-teacher model (pose3dfr.models.frontal_gate), whose
        inner product with the stored embeddings is the routed score; they are searched as unit rows and the
        scores scaled back by each query's norm."""
        if not isinstance(top_k, int) or top_k < 1:
            raise GalleryError(f"top_k must be a positive integer, got {top_k!r}")
        if not len(self):
            raise GalleryError("the gallery is empty")
        norms = np.linalg.norm(np.asarray(queries, dtype=np.float32), axis=1, keepdims=True) if routed else 1.0
        queries = _unit_rows(queries, self.dim)
        # enough templates that the top-K identities are surely among them (an identity counts once)
        k = min(len(self), top_k * self._most_templates)
        scores, ids = self._top_templates(queries, k)  # Q x k each, ids -1 where an approximate index ran short
        scores = scores * norms  # routed: back to e . q (plain queries: norms = 1)
        results = []
        for row_scores, row_ids in zip(scores, ids):
            best: dict[str, float] = {}
            for score, i in zip(row_scores.tolist(), row_ids.tolist()):
                if i >= 0:
                    name = self._entries[i][0]
                    best[name] = max(best.get(name, -math.inf), score)
            ranked = sorted(best.items(), key=lambda item: -item[1])[:top_k]
            results.append([IdentifyMatch(n, float(np.clip(s, -1.0, 1.0)), bool(s >= threshold)) for n, s in ranked])
        return results

    def _top_templates(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q x k scores, Q x k ids) of the best templates: the certified pre-scan when there is one, else FAISS."""
        if self._scan is None or k >= len(self):
            return self._index.search(queries, k)
        store = self._flat_rows()
        found = [self._scan.search(store, q, k) for q in queries]
        return np.stack([f.scores for f in found]), np.stack([self._row_ids[f.rows] for f in found])

    # ------------------------------------------------------------------ files
    def save(self, folder: str | Path) -> Path:
        """Write `folder/index.faiss` and `folder/gallery.json` (written last, so a torn save is refused)."""
        import faiss

        if self._index is None:
            raise GalleryError("an empty gallery cannot be saved")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        data = faiss.serialize_index(self._index).tobytes()
        write_atomic(folder / INDEX_FILE, data)
        ids = sorted(self._entries)
        meta = {"kind": KIND, "format": FORMAT, "checkpoint": {"name": self.checkpoint,
                                                                  "weights_sha256": self.weights_sha256},
                "dim": self.dim, "index": asdict(self.config), "index_file": INDEX_FILE,
                "index_sha256": hashlib.sha256(data).hexdigest(), "index_bytes": len(data), "next_id": self._next_id,
                "entries": {"ids": ids, "names": [self._entries[i][0] for i in ids],
                            "photos": [self._entries[i][1] for i in ids]}}
        write_atomic(folder / META_FILE, json.dumps(meta, separators=(",", ":")).encode())
        return folder

    def check_checkpoint(self, name: str, weights_sha256: str) -> None:
        """GalleryError unless checkpoint `name` (weights `weights_sha256`, the one in use) is the one this gallery
        was built with."""
        if (weights_sha256 or "") != self.weights_sha256:
            raise GalleryError(f"the gallery was built with checkpoint {self.checkpoint!r} (weights sha256 "
                               f"{self.weights_sha256[:12]}...) but checkpoint {name!r} is in use; "
                               f"search it with --checkpoint {self.checkpoint} or rebuild the gallery")

    @classmethod
    def load(cls, folder: str | Path, in_use: tuple[str, str] | None = None) -> "Gallery":
        """Read a saved gallery; GalleryError when missing, corrupt, truncated or (with `in_use`: the (name, weights
        sha256) of the checkpoint in use) of another checkpoint, refused before the index file is read."""
        import faiss

        folder = Path(folder)
        label = folder.name
        meta = read_meta(folder / META_FILE, label)
        checkpoint, ids, names, photos = parse_meta(meta, label)
        gallery = cls(checkpoint["name"], checkpoint["weights_sha256"], IndexConfig(**meta["index"]))
        if in_use is not None:
            gallery.check_checkpoint(*in_use)
        data = read_index_bytes(folder / INDEX_FILE, meta, label)
        try:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except RuntimeError:
            raise GalleryError(f"{label}: {INDEX_FILE} is not a FAISS index") from None
        stored = np.sort(faiss.vector_to_array(index.id_map)) if hasattr(index, "id_map") else None
        if index.d != meta["dim"] or index.ntotal != len(ids) or stored is None or not np.array_equal(stored, ids):
            raise GalleryError(f"{label}: {INDEX_FILE} does not hold the {len(ids)} templates of {META_FILE}")
        _set_search_options(index, gallery.config)
        gallery.dim, gallery._index, gallery._next_id = int(meta["dim"]), index, int(meta["next_id"])
        gallery._entries = {int(i): (n, p) for i, n, p in zip(ids.tolist(), names, photos)}
        gallery._per_name = Counter(names)
        gallery._sync_scan(appended=False)  # the int8 codes are not saved: re-made from the float32 templates
        return gallery


# ---------------------------------------------------------------------- helpers
def check_identity_name(name: Any) -> None:
    """GalleryError unless `name` can name an identity (a non-empty string)."""
    if not isinstance(name, str) or not name.strip():
        raise GalleryError(f"identity names must be non-empty strings, got {name!r}")


def _unit_rows(embeddings: Any, dim: int | None) -> np.ndarray:
    """N x D float32 C-contiguous unit rows; GalleryError for a wrong shape or non-finite values."""
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim) or x.shape[1] == 0:
        raise GalleryError(f"embeddings must be N x {dim or 'D'}, got shape {tuple(x.shape)}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.isfinite(x).all() or (norms <= 1e-12).any():
        raise GalleryError("embeddings must be finite and non-zero")
    return np.ascontiguousarray(x / norms)


def _new_index(dim: int, config: IndexConfig, sample: np.ndarray):
    """An empty IndexIDMap2 over the configured inner-product index (IVF trained on `sample`)."""
    import faiss

    if config.kind == "flat":
        inner = faiss.IndexFlatIP(dim)
    elif config.kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = config.hnsw_ef_construction
    else:
        lists = config.ivf_lists or max(1, int(4 * math.sqrt(len(sample))))
        lists = min(lists, len(sample))  # k-means needs at least one template per cell
        config.ivf_lists = lists
        inner = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)  # same sample, same cells
        train = sample if len(sample) <= config.ivf_train_max else sample[rng.choice(len(sample), config.ivf_train_max,
                                                                                       replace=False)]
        inner.cp.min_points_per_centroid = 1  # small galleries: no warning, k-means runs on what there is
        inner.train(train)
        inner.make_direct_map()  # reconstruct(), which a removal's rebuild needs
    index = faiss.IndexIDMap2(inner)
    _set_search_options(index, config)
    return index


def _set_search_options(index, config: IndexConfig) -> None:
    import faiss

    inner = faiss.downcast_index(index.index)
    if config.kind == "hnsw":
        inner.hnsw.efSearch = config.hnsw_ef_search
    elif config.kind == "ivf":
        inner.nprobe = config.ivf_probe
