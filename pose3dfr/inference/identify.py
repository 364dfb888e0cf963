"""1:N identification of photos through a Verifier: enrolment into a Gallery (pose3dfr.inference.gallery, which
stores embeddings only), the search of a probe photo against the calibrated threshold, identity folders
(`<folder>/<identity>/<photo>`), and the check that a gallery and a verifier run one checkpoint.

    from pose3dfr.inference.identify import build_gallery, load_gallery, search_photo
    gallery, report = build_gallery(verifier, "people/")        # people/<identity>/*.jpg
    gallery.save("people.gallery")
    gallery = load_gallery("people.gallery", verifier)          # refuses a gallery of another checkpoint
    result = search_photo(gallery, verifier, "probe.jpg", top_k=5)
    print(result.best or "no one in the gallery", result.matches)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from pose3dfr.data.facescape import IMAGE_SUFFIXES, identity_sort_key
from pose3dfr.errors import GalleryError, Pose3DFRError
from pose3dfr.eval.calibration import DEFAULT_FAR
from pose3dfr.eval.thresholds import Threshold
from pose3dfr.inference.gallery import DEFAULT_TOP_K, Gallery, IdentifyMatch, check_identity_name
from pose3dfr.inference.gallery_files import IndexConfig
from pose3dfr.models.frontal_gate import probe_forms

if TYPE_CHECKING:
    from pose3dfr.face.image_io import ImageInput
    from pose3dfr.inference.verifier import Verifier


@dataclass(frozen=True)
class Failure:
    """A photo that could not be enrolled, and why."""

    identity: str
    photo: str
    reason: str


@dataclass
class EnrolReport:
    """What an enrolment did: templates added per identity and the photos that failed (not fatal)."""

    added: dict[str, int] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    group_photos: list[Failure] = field(default_factory=list)  # enrolled, but the photo held several faces

    @property
    def photos(self) -> int:
        """Photos tried (an identity folder without photos is a failure but not a photo)."""
        return sum(self.added.values()) + sum(1 for f in self.failures if f.photo)


@dataclass
class GallerySearch:
    """Top-K identities for one probe photo, with the decision threshold and the probe's pose."""

    matches: list[IdentifyMatch]  # best first; .match = score >= threshold
    threshold: Threshold
    probe_yaw: float | None
    probe_bin: str | None
    probe_faces: int = 1  # faces found in the probe photo; the largest was searched
    probe_box: list[float] | None = None  # x0, y0, x1, y1 (px) of the face searched
    rejected_faces: list[dict[str, Any]] = field(default_factory=list)  # probe boxes that did not look like a face

    @property
    def best(self) -> IdentifyMatch | None:
        """The top identity when its score reaches the threshold; None means "no one in the gallery"."""
        return self.matches[0] if self.matches and self.matches[0].match else None


# ---------------------------------------------------------------------- the checkpoint a gallery belongs to
def checkpoint_sha256(verifier: Verifier) -> str:
    """The weights sha256 a gallery is versioned with; GalleryError for a model that records none."""
    digest = verifier.meta.get("weights_sha256")
    if not isinstance(digest, str) or not digest:
        raise GalleryError(f"checkpoint {verifier.name!r} records no weights sha256, so a gallery cannot be "
                           "tied to it; save it as a checkpoint first")
    return digest


def in_use(verifier: Verifier) -> tuple[str, str]:
    """(name, weights sha256) of the verifier's checkpoint, as Gallery.check_checkpoint and Gallery.load take it."""
    return verifier.name, verifier.meta.get("weights_sha256") or ""


def new_gallery(verifier: Verifier, config: IndexConfig | None = None) -> Gallery:
    """An empty gallery versioned with the verifier's checkpoint."""
    return Gallery(verifier.name, checkpoint_sha256(verifier), config)


def load_gallery(folder: str | Path, verifier: Verifier) -> Gallery:
    """A saved gallery of the verifier's checkpoint; GalleryError for another checkpoint's (refused before its
    index is read)."""
    return Gallery.load(folder, in_use(verifier))


# ---------------------------------------------------------------------- enrolment
def identity_photos(folder: str | Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """([(identity, photo path)], [identity folders without photos]) of `<folder>/<identity>/<photo>`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GalleryError(f"{folder.name}: folder not found")
    items, empty = [], []
    for person in sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: identity_sort_key(p.name)):
        photos = sorted(p for p in person.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        items += [(person.name, p) for p in photos]
        if not photos:
            empty.append(person.name)
    if not items:
        raise GalleryError(f"{folder.name}: no <identity>/<photo>.jpg|.jpeg|.png found")
    return items, empty


def enrol_photos(gallery: Gallery, verifier: Verifier, items: Sequence[tuple[str, ImageInput]], *,
                 progress: Callable[[int], None] | None = None) -> EnrolReport:
    """Enrol (identity name, photo) pairs through the verifier (detection, alignment, embedding)."""
    gallery.check_checkpoint(*in_use(verifier))
    for name, _ in items:
        check_identity_name(name)
    embedded = verifier.embed_photos([photo for _, photo in items], progress=progress)
    report = EnrolReport()
    good = [(name, e) for (name, _), e in zip(items, embedded) if e.error is None]
    report.failures = [Failure(name, e.source, e.error) for (name, _), e in zip(items, embedded) if e.error]
    if good:
        gallery.add_embeddings(np.stack([e.embedding for _, e in good]), [n for n, _ in good],
                               [e.source for _, e in good])
    report.added = dict(Counter(name for name, _ in good))
    report.group_photos = [Failure(name, e.source, f"{e.faces} faces found; the largest was enrolled as {name}")
                           for name, e in good if e.faces > 1]
    return report


def enrol_folder(gallery: Gallery, verifier: Verifier, folder: str | Path, *,
                 progress: Callable[[int], None] | None = None) -> EnrolReport:
    """Enrol every `<identity>/<photo>` of a folder; identity folders without photos are reported."""
    items, empty = identity_photos(folder)
    report = enrol_photos(gallery, verifier, [(name, path) for name, path in items], progress=progress)
    report.failures += [Failure(name, "", "no .jpg/.jpeg/.png photo in the identity folder") for name in empty]
    return report


def build_gallery(verifier: Verifier, folder: str | Path, config: IndexConfig | None = None, *,
                  progress: Callable[[int], None] | None = None) -> tuple[Gallery, EnrolReport]:
    """A new gallery of a folder of identities (`<identity>/*.jpg|.png`); photos without a usable face are reported."""
    gallery = new_gallery(verifier, config)
    report = enrol_folder(gallery, verifier, folder, progress=progress)
    if not len(gallery):
        raise GalleryError(f"{Path(folder).name}: no face could be enrolled from {report.photos} photos")
    return gallery, report


# ---------------------------------------------------------------------- search
def search_photo(gallery: Gallery, verifier: Verifier, probe: ImageInput, top_k: int = DEFAULT_TOP_K,
                 far: float | None = None, *, align: str = "auto", bgr: bool = False) -> GallerySearch:
    """Detect, align and embed the probe, then its top-K identities against the calibrated threshold.

    Enrolments are frontal (yaw 0), so the probe's pose decides the threshold and, for a frontal-teacher model,
    the route: the query is the probe form of the route the threshold was decided for."""
    gallery.check_checkpoint(*in_use(verifier))
    far = DEFAULT_FAR if far is None else far
    verifier.threshold(far)  # a bad FAR fails before any model runs
    probe_embedding = verifier.embed_photos([probe], align=align, bgr=bgr, raise_errors=True)[0]
    threshold = verifier.policy.decide(far, probe_embedding.yaw, 0.0, probe_bin=probe_embedding.bin)
    routing = verifier.routing
    query = probe_forms(probe_embedding.embedding[None], [bool(threshold.teacher)], routing)
    matches = gallery.search(query, top_k, threshold.value, routed=routing is not None)[0]
    return GallerySearch(matches, threshold, probe_embedding.yaw, probe_embedding.bin, probe_embedding.faces,
                         probe_embedding.box, probe_embedding.rejected_faces)


def identify(verifier: Verifier, probe: ImageInput, gallery: Mapping[str, ImageInput | np.ndarray] | Gallery,
             far: float = DEFAULT_FAR, *, top_k: int | None = None, align: str = "auto",
             bgr: bool = False) -> list[IdentifyMatch]:
    """Rank a gallery (a Gallery, or {name: photo or precomputed embedding}) by score against the probe, best
    first; search_photo also gives the threshold and the probe's pose."""
    if not isinstance(gallery, Gallery):
        if not gallery:
            raise Pose3DFRError("identify needs a non-empty gallery")
        gallery = gallery_from_mapping(verifier, gallery, align=align, bgr=bgr)
    top_k = top_k or len(gallery.names)
    return search_photo(gallery, verifier, probe, top_k, far, align=align, bgr=bgr).matches


def gallery_from_mapping(verifier: Verifier, gallery: Mapping[str, Any], *, align: str = "auto",
                         bgr: bool = False) -> Gallery:
    """An in-memory exact gallery of {name: photo or D embedding} (one template per name), for `identify`."""
    names = list(gallery)
    vectors: dict[str, np.ndarray] = {}
    photos = [n for n in names if not (isinstance(gallery[n], np.ndarray) and gallery[n].ndim == 1)]
    for name, embedded in zip(photos, verifier.embed_photos([gallery[n] for n in photos], align=align, bgr=bgr,
                                                             raise_errors=True)):
        vectors[name] = embedded.embedding
    for name in names:
        if name not in vectors:
            vectors[name] = np.asarray(gallery[name], np.float32)
    built = Gallery(*in_use(verifier))
    built.add_embeddings(np.stack([vectors[n] for n in names]), names, names)
    return built
