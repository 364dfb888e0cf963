"""A gallery's files: `gallery.json` (format, checkpoint name + weights sha256, index options, the index
file's size and sha256, the entries) and `index.faiss`. Everything a loaded file claims is checked here,
the index bytes against their recorded sha256, before FAISS's C++ reader ever sees them."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from pose3dfr.errors import GalleryError


INDEX_KINDS = ("flat", "hnsw", "ivf")


@dataclass
class IndexConfig:
    """Which FAISS index holds the templates; "flat" is exact, the others approximate (docs/gallery.md)."""

    kind: str = "flat"
    hnsw_m: int = 32  # graph neighbours per node: FAISS's usual choice for 128-512-D embeddings
    hnsw_ef_construction: int = 64  # build-time beam width: better graph for ~2x the build time of 32
    hnsw_ef_search: int = 128  # query-time beam width (>= top-K); higher = better recall, slower
    ivf_lists: int | None = None  # k-means cells; None: 4 * sqrt(N) at the first add (FAISS's 4-16 sqrt N guideline)
    ivf_probe: int = 32  # cells visited per query; higher = better recall, slower
    ivf_train_max: int = 65536  # k-means runs on at most this many templates (FAISS samples 256 per cell anyway)
    exact_min_size: int = 50_000  # "flat" galleries this large search via the certified int8 pre-scan (exact too)
    exact_candidates: int = 256  # K': rows the int8 pre-scan keeps per block before certifying (docs/gallery.md)
    exact_threads: int = 1  # onnxruntime threads of the pre-scan: 1 was fastest at batch 1 on a shared 2-core box

    def validate(self) -> "IndexConfig":
        if self.kind not in INDEX_KINDS:
            raise GalleryError(f"index kind must be one of {INDEX_KINDS}, got {self.kind!r}")
        for name in ("hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "ivf_probe", "ivf_train_max",
                     "exact_min_size", "exact_candidates", "exact_threads"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise GalleryError(f"index option {name} must be a positive integer, got {getattr(self, name)!r}")
        if self.ivf_lists is not None and (not isinstance(self.ivf_lists, int) or self.ivf_lists < 1):
            raise GalleryError(f"index option ivf_lists must be a positive integer or null, got {self.ivf_lists!r}")
        return self

FORMAT = 1


KIND = "pose3dfr-gallery"


META_FILE = "gallery.json"


INDEX_FILE = "index.faiss"


MAX_META_BYTES = 1 << 30  # 1 GiB: ~20 M entries of metadata; a larger gallery.json is refused unread


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read_meta(path: Path, label: str) -> dict[str, Any]:
    if not path.is_file():
        raise GalleryError(f"{label}: not a gallery ({META_FILE} not found)")
    if path.stat().st_size > MAX_META_BYTES:
        raise GalleryError(f"{label}: {META_FILE} is larger than {MAX_META_BYTES >> 20} MiB")
    try:
        meta = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, ValueError):
        raise GalleryError(f"{label}: {META_FILE} is not valid JSON (corrupt or truncated)") from None
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        raise GalleryError(f"{label}: {META_FILE} is not a pose3dfr gallery")
    if meta.get("format") != FORMAT:
        raise GalleryError(f"{label}: gallery format {meta.get('format')!r} is not supported (expected {FORMAT})")
    return meta


def parse_meta(meta: Mapping[str, Any], label: str) -> tuple[dict[str, str], np.ndarray, list[str], list[str]]:
    """(checkpoint, ids, names, photos) after checking every field's type."""
    bad = GalleryError(f"{label}: {META_FILE} has missing or malformed fields")
    checkpoint, entries, index = meta.get("checkpoint"), meta.get("entries"), meta.get("index")
    if not (isinstance(checkpoint, dict) and all(isinstance(checkpoint.get(k), str) and checkpoint[k]
                                                 for k in ("name", "weights_sha256"))
            and isinstance(entries, dict) and isinstance(index, dict) and set(index) <= set(IndexConfig.__annotations__)
            and is_int(meta.get("dim")) and meta["dim"] > 0 and is_int(meta.get("next_id"))
            and isinstance(meta.get("index_sha256"), str) and is_int(meta.get("index_bytes"))):
        raise bad
    ids, names, photos = entries.get("ids"), entries.get("names"), entries.get("photos")
    if not (isinstance(ids, list) and isinstance(names, list) and isinstance(photos, list)
            and len(ids) == len(names) == len(photos) and all(is_int(i) and 0 <= i < meta["next_id"] for i in ids)
            and all(isinstance(n, str) and n.strip() for n in names) and all(isinstance(p, str) for p in photos)
            and len(set(ids)) == len(ids)):
        raise bad
    try:
        IndexConfig(**index).validate()
    except (TypeError, GalleryError):
        raise bad from None
    return checkpoint, np.asarray(ids, dtype=np.int64), names, photos


def read_index_bytes(path: Path, meta: Mapping[str, Any], label: str) -> bytes:
    if not path.is_file():
        raise GalleryError(f"{label}: {INDEX_FILE} not found")
    if path.stat().st_size != meta["index_bytes"]:
        raise GalleryError(f"{label}: {INDEX_FILE} has {path.stat().st_size} bytes, {META_FILE} records "
                           f"{meta['index_bytes']} (truncated or replaced)")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta["index_sha256"]:
        raise GalleryError(f"{label}: {INDEX_FILE} sha256 does not match {META_FILE} (corrupt or modified)")
    return data


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
