"""Verification on anyone's own labelled photos (`pose3dfr eval-photos FOLDER`): the folder, the pairs, the rows.

Layout (docs/eval_photos.md), files starting with "." ignored:
    FOLDER/IDENTITY/.../NAME.ext     identity from the first folder level; NAME is YAW__k or IDENTITY__YAW__k
                                     (labelled), or has no "__" at all (unlabelled)
    FOLDER/IDENTITY__YAW__k.ext      flat: identity, labelled yaw, any tag k
YAW is signed degrees in pose3dfr's convention (yaw > 0: the face turns to the image right; pose3dfr.geometry).
Single underscores never carry a label: databases put other numbers there (Multi-PIE's 001_01_01_051_05 names
camera 05_1, its frontal one), so a "__" name that fits neither form is refused, never guessed.

Protocol: per identity one enrolment, its most frontal photo (smallest labelled |yaw|; an identity without labels:
smallest |yaw| the Verifier estimates), at most `frontal_max_yaw` off; every other photo is a probe, in a genuine
pair with its own identity's enrolment and an impostor pair with every other identity's. Probes are grouped by
|yaw| (the label where given, else the Verifier's estimate). pose3dfr decides each pair by the Verifier's own
threshold for that pair (ThresholdPolicy.decide_pair: what `pose3dfr verify` does); each peer by its own rule
(pose3dfr.eval.peers), on the same images. A photo in which a system finds no face makes each of its pairs a
reject for that system (score -inf).
"""

from __future__ import annotations

import collections
import math
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from pose3dfr.data.facescape import IMAGE_SUFFIXES, identity_sort_key
from pose3dfr.errors import InvalidImageError, Pose3DFRError
from pose3dfr.eval.metrics import auc, tar_at_far, threshold_at_far
from pose3dfr.eval.peers import System
from pose3dfr.eval.thresholds import check_far
from pose3dfr.face.image_io import load_image
from pose3dfr.geometry import FRONTAL_MAX_YAW, pose_bin, pose_bin_labels

if TYPE_CHECKING:
    from pose3dfr.inference.verifier import EmbeddedPhoto, Verifier

SEPARATOR = "__"
YAW_PATTERN = re.compile(r"[+-]?\d+(\.\d+)?")  # plain signed decimals: no exponents, no nan/inf
UNKNOWN_GROUP = "yaw unknown"  # probes without a label in which the Verifier estimated no yaw
ALL_GROUP = "all"
OURS = "pose3dfr"  # key of pose3dfr's own rows among the systems


@dataclass(frozen=True)
class PhotoFolderConfig:
    """What eval-photos measures; every field has a default that runs."""

    far: float = 0.01  # FAR of the shipped decision (the Verifier's threshold for each pair)
    empirical_far: float = 0.01  # FAR of the threshold set on the folder's own impostor pairs
    # |yaw| group edges, as pose3dfr.geometry.pose_bin reads them: [0,30) ... [75,90) and [90,+). 75 and 90 split
    # the profile range where results part (issue 31's real-photo tables), and full profiles (Multi-PIE's +-90
    # cameras, CFP's profiles labelled 90) get a group of their own.
    groups: tuple[float, ...] = (0.0, 30.0, 60.0, 75.0, 90.0)
    frontal_max_yaw: float = FRONTAL_MAX_YAW  # an enrolment is at most this far off frontal (the protocol's gallery)
    flip_error: float = 90.0  # an estimate more than this off its label has the side wrong: a flip
    chunk: int = 16  # photos decoded and embedded at a time (bounds memory on large folders)

    def validate(self) -> "PhotoFolderConfig":
        check_far(self.far)
        check_far(self.empirical_far)
        edges = list(self.groups)
        if len(edges) < 2 or edges != sorted(set(edges)) or edges[0] != 0:
            raise Pose3DFRError(f"groups must be ascending |yaw| edges from 0, e.g. 0,30,60,75,90; got {self.groups}")
        if not 0 <= self.frontal_max_yaw <= 90 or self.chunk < 1:
            raise Pose3DFRError("frontal_max_yaw must be in [0, 90] and chunk >= 1")
        return self


def parse_groups(text: str) -> tuple[float, ...]:
    """Group edges from "0,30,60,75,90"; Pose3DFRError on anything else."""
    try:
        edges = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise Pose3DFRError(f"--groups takes comma-separated degrees, e.g. 0,30,60,75,90; got {text!r}") from None
    return PhotoFolderConfig(groups=edges).validate().groups


# ---------------------------------------------------------------------------------------------- the folder
@dataclass(frozen=True)
class FolderPhoto:
    path: Path
    name: str  # relative to the folder, "/"-separated
    identity: str
    yaw_label: float | None  # degrees, pose3dfr's convention; None when the name carries none


@dataclass
class PhotoFolder:
    root: Path
    photos: list[FolderPhoto]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, why) of every file left out


def parse_name(relative: PurePosixPath) -> tuple[str, float | None]:
    """(identity, yaw label) of a photo's path relative to the folder; Pose3DFRError saying why when refused."""
    fields = relative.stem.split(SEPARATOR)
    if len(relative.parts) == 1:  # flat
        if len(fields) != 3 or not fields[0] or not fields[2]:
            raise Pose3DFRError("a photo directly in the folder is named IDENTITY__YAW__k (e.g. alice__-45__1.jpg)")
        return fields[0], _yaw(fields[1])
    identity = relative.parts[0]
    if len(fields) == 1:
        return identity, None
    if len(fields) == 2 and fields[1]:
        return identity, _yaw(fields[0])
    if len(fields) == 3 and fields[2] and fields[0] == identity:
        return identity, _yaw(fields[1])
    if len(fields) == 3 and fields[2]:
        raise Pose3DFRError(f"its name says identity {fields[0]!r} but it is in folder {identity!r}")
    raise Pose3DFRError("'__' in a name inside an identity folder must give YAW__k or IDENTITY__YAW__k")


def _yaw(text: str) -> float:
    if not YAW_PATTERN.fullmatch(text) or abs(float(text)) > 180:
        raise Pose3DFRError(f"yaw label {text!r} is not signed degrees in [-180, 180]")
    return float(text)


def read_photo_folder(folder: str | Path) -> PhotoFolder:
    """Every photo of the folder with its identity and yaw label; refused and non-photo files listed as skipped."""
    root = Path(folder)
    if not root.is_dir():
        raise Pose3DFRError(f"{folder}: no such folder")
    photos, skipped = [], []
    for path in sorted(root.rglob("*")):
        relative = PurePosixPath(path.relative_to(root).as_posix())
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append((str(relative), f"not a photo (photos are {', '.join(IMAGE_SUFFIXES)})"))
            continue
        try:
            identity, yaw = parse_name(relative)
        except Pose3DFRError as exc:
            skipped.append((str(relative), f"name refused: {exc}"))
            continue
        photos.append(FolderPhoto(path, str(relative), identity, yaw))
    if not photos:
        raise Pose3DFRError(f"{folder}: no photos to evaluate ({len(skipped)} files skipped; layout in "
                            "docs/eval_photos.md: IDENTITY/NAME.jpg or IDENTITY__YAW__k.jpg)")
    photos.sort(key=lambda p: (identity_sort_key(p.identity), p.name))
    return PhotoFolder(root, photos, skipped)


def read_benchmark_split(root: str | Path, split: str | None = "test", max_identities: int | None = None
                         ) -> PhotoFolder:
    """A synthetic benchmark (or FaceScape-layout) root read as a labelled photo folder: every view of the split's
    identities (the first `max_identities`), labelled with its true yaw, so eval-photos measures renders exactly as
    it measures a user's photos (the same enrolment rule, pairs and decisions)."""
    from pose3dfr.data.facescape import FaceScapeMultiView

    dataset = FaceScapeMultiView(root, split=split, num_points=0)
    if max_identities is not None and dataset.num_identities > max_identities:
        dataset = FaceScapeMultiView(root, identities=dataset.identity_names[:max_identities], num_points=0)
    base = dataset.images_root
    photos = [FolderPhoto(Path(r.path), _name_under(Path(r.path), base), r.identity_name, r.yaw)
              for r in dataset.records if r.yaw is not None]
    photos.sort(key=lambda p: (identity_sort_key(p.identity), p.name))
    return PhotoFolder(Path(root), photos)


def _name_under(path: Path, base: Path) -> str:
    """A record's name relative to the images root (records hold paths joined onto the root already)."""
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


def is_benchmark_root(folder: str | Path) -> bool:
    """Whether `folder` is a synthetic benchmark root (its manifest.json names the generator)."""
    manifest = Path(folder) / "manifest.json"
    return manifest.is_file() and "images" in {p.name for p in Path(folder).iterdir()}


# ---------------------------------------------------------------------------------------------- enrolment, pairs
def choose_enrolments(photos: Sequence[FolderPhoto], estimates: Sequence[float | None] | None,
                      config: PhotoFolderConfig) -> tuple[dict[str, int], list[str]]:
    """({identity: index of its enrolment photo}, warnings). An identity with any labelled photo enrols its
    smallest labelled |yaw| (the labels decide, the same for every system); one without labels its smallest
    estimated |yaw| (`estimates`, None: not known yet, the identity is left out)."""
    by_identity: dict[str, list[int]] = collections.defaultdict(list)
    for i, photo in enumerate(photos):
        by_identity[photo.identity].append(i)
    enrolments, warnings = {}, []
    for identity in sorted(by_identity, key=identity_sort_key):
        indices = by_identity[identity]
        labelled = [(abs(photos[i].yaw_label), i) for i in indices if photos[i].yaw_label is not None]
        if labelled:
            candidates, how = labelled, "labelled"
        elif estimates is None:
            continue
        else:
            candidates = [(abs(estimates[i]), i) for i in indices if estimates[i] is not None]
            how = "estimated"
        if not candidates:
            warnings.append(f"{identity}: no face with an estimated yaw in any photo, so no enrolment "
                            "(its photos are impostor probes only)")
            continue
        best, index = min(candidates)
        if best > config.frontal_max_yaw:
            warnings.append(f"{identity}: no frontal photo (smallest {how} |yaw| {best:g} > "
                            f"{config.frontal_max_yaw:g}), so no enrolment (its photos are impostor probes only)")
            continue
        enrolments[identity] = index
    return enrolments, warnings


def check_folder(folder: PhotoFolder, config: PhotoFolderConfig) -> list[str]:
    """Refuse, before any model runs, a folder in which nothing can be paired; else the warnings it already
    deserves (the enrolment warnings come with the enrolments, after the photos are embedded)."""
    identities = {p.identity for p in folder.photos}
    if len(folder.photos) < 2:
        raise Pose3DFRError("one photo only: nothing to compare")
    enrolments, _ = choose_enrolments(folder.photos, None, config)
    unlabelled = identities - {p.identity for p in folder.photos if p.yaw_label is not None}
    if not enrolments and not unlabelled:
        raise Pose3DFRError(f"no identity has a frontal photo (labelled |yaw| <= {config.frontal_max_yaw:g}): "
                            "nothing to enrol")
    if len(identities) == 1:
        return [f"one identity only ({next(iter(identities))}): no impostor pairs, so impostor accept rate, AUC "
                "and TAR at an empirical FAR are not measured"]
    return []


@dataclass(frozen=True)
class Pairs:
    """Every (enrolment, probe) pair: photo indices and whether both are the same identity."""

    enrol: np.ndarray  # P int32
    probe: np.ndarray  # P int32
    genuine: np.ndarray  # P bool
    probes: np.ndarray  # Q int32: photo indices of the probes (every photo that is not an enrolment)


def build_pairs(identities: Sequence[str], enrolments: Mapping[str, int]) -> Pairs:
    """Each probe against every enrolment: genuine with its own identity's, impostor with the others'."""
    enrolled = np.array(sorted(enrolments.values()), dtype=np.int32)
    probes = np.setdiff1d(np.arange(len(identities), dtype=np.int32), enrolled)
    enrol, probe = np.tile(enrolled, len(probes)), np.repeat(probes, len(enrolled))
    names = np.asarray(identities, dtype=object)
    return Pairs(enrol, probe, (names[enrol] == names[probe]).astype(bool), probes)


# ---------------------------------------------------------------------------------------------- embedding
@dataclass
class Embedded:
    """What each system made of each photo (None: no face found), in folder order."""

    ours: list["EmbeddedPhoto"]
    peers: dict[str, list[np.ndarray | None]]


def embed_folder(folder: PhotoFolder, verifier: "Verifier", peers: Mapping[str, System], config: PhotoFolderConfig,
                 progress: Callable[[int], None] | None = None
                 ) -> tuple[list[FolderPhoto], Embedded, list[tuple[str, str]]]:
    """(readable photos, their embeddings, (name, why) of the unreadable ones): each photo is decoded once, in
    chunks, and shown to every system."""
    kept: list[FolderPhoto] = []
    unreadable: list[tuple[str, str]] = []
    embedded = Embedded([], {key: [] for key in peers})
    for start in range(0, len(folder.photos), config.chunk):
        chunk, images = folder.photos[start: start + config.chunk], []
        for photo in chunk:
            try:
                images.append(load_image(photo.path))
                kept.append(photo)
            except InvalidImageError as exc:
                unreadable.append((photo.name, f"unreadable: {exc}"))
        if images:
            embedded.ours += verifier.embed_photos(images)
            for key, system in peers.items():
                embedded.peers[key] += [system.detect_align_embed(image) for image in images]
        if progress is not None:
            progress(len(chunk))
    return kept, embedded, unreadable


# ---------------------------------------------------------------------------------------------- decisions, rows
def ours_decisions(verifier: "Verifier", photos: Sequence["EmbeddedPhoto"], pairs: Pairs, far: float
                   ) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """(P scores, -inf without a face; P accepted; P threshold evidence) as `Verifier.verify` decides each pair."""
    scores = np.full(len(pairs.enrol), -np.inf)
    accepted = np.zeros(len(pairs.enrol), bool)
    evidence: list[str | None] = [None] * len(pairs.enrol)
    for k, (e, p) in enumerate(zip(pairs.enrol.tolist(), pairs.probe.tolist())):
        a, b = photos[e], photos[p]
        if a.embedding is None or b.embedding is None:
            continue
        decision = verifier.policy.decide_pair(far, a.embedding, b.embedding, a.yaw, b.yaw, probe_bin=b.bin)
        scores[k], accepted[k], evidence[k] = decision.score, decision.match, decision.threshold.evidence
    return scores, accepted, evidence


def peer_decisions(system: System, embeddings: Sequence[np.ndarray | None], pairs: Pairs
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(P scores, -inf without a face; P accepted by the peer's own rule)."""
    found = np.array([e is not None for e in embeddings])
    scores = np.full(len(pairs.enrol), -np.inf)
    both = found[pairs.enrol] & found[pairs.probe]
    if both.any():
        dim = next(len(e) for e in embeddings if e is not None)
        matrix = np.stack([np.zeros(dim, np.float32) if e is None else e for e in embeddings])  # N x D
        enrolled = np.unique(pairs.enrol)
        table = system.similarity(matrix[enrolled], matrix).astype(np.float64)  # E x N
        rows = np.searchsorted(enrolled, pairs.enrol)
        scores[both] = table[rows[both], pairs.probe[both]]
    return scores, system.accepts(scores) & both


def wrapped_error(estimate: float, label: float) -> float:
    """estimate - label in degrees, wrapped to [-180, 180)."""
    return (estimate - label + 180.0) % 360.0 - 180.0


def group_of(yaw: float | None, edges: Sequence[float]) -> str:
    return UNKNOWN_GROUP if yaw is None or not math.isfinite(yaw) else pose_bin(yaw, edges)


def system_rows(scores: np.ndarray, accepted: np.ndarray, found: np.ndarray, pairs: Pairs, groups: np.ndarray,
                config: PhotoFolderConfig, evidence: Sequence[str | None] | None = None,
                yaw_errors: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One row per probe group that has probes, then ALL_GROUP. `groups`: N group labels of the photos;
    `yaw_errors`: N x 2 (estimate - label, |estimate| - |label|), NaN where either is missing; pose3dfr only."""
    present = set(groups[pairs.probes].tolist())
    order = [g for g in [*pose_bin_labels(config.groups), UNKNOWN_GROUP] if g in present] + [ALL_GROUP]
    rows = []
    for group in order:
        probes = pairs.probes if group == ALL_GROUP else pairs.probes[groups[pairs.probes] == group]
        in_group = np.isin(pairs.probe, probes)
        row = _row(group, scores[in_group], accepted[in_group], pairs.genuine[in_group], config)
        row.update(probes=int(len(probes)), faces_found=int(found[probes].sum()))
        if evidence is not None:
            row["threshold_evidence"] = dict(collections.Counter(evidence[k] for k in np.flatnonzero(in_group)
                                                                 if evidence[k] is not None))
        if yaw_errors is not None:
            row["yaw_error"] = _yaw_error(yaw_errors[probes, 0], yaw_errors[probes, 1], config.flip_error)
        rows.append(row)
    return rows


def _row(group: str, scores: np.ndarray, accepted: np.ndarray, genuine: np.ndarray,
         config: PhotoFolderConfig) -> dict[str, Any]:
    gen, imp = scores[genuine], scores[~genuine]
    n_gen, n_imp = int(genuine.sum()), int((~genuine).sum())
    row: dict[str, Any] = {
        "group": group,
        "genuine_pairs": n_gen, "genuine_accepted": int(accepted[genuine].sum()),
        "genuine_accept_rate": _rate(accepted[genuine]),
        "impostor_pairs": n_imp, "impostors_accepted": int(accepted[~genuine].sum()),
        "impostor_accept_rate": _rate(accepted[~genuine]),
        "auc": float(auc(gen, imp)) if n_gen and n_imp else None,
    }
    far = config.empirical_far
    enough = n_gen > 0 and n_imp * far >= 1.0 - 1e-9  # at least 1 / FAR impostor pairs: one false accept expected
    row["empirical"] = {"far": far, "impostor_pairs": n_imp,
                        "tar": tar_at_far(gen, imp, far) if enough else None,
                        "threshold": _finite(threshold_at_far(gen, imp, far)) if enough else None}
    return row


def _rate(flags: np.ndarray) -> float | None:
    return float(flags.mean()) if flags.size else None


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _yaw_error(errors: np.ndarray, magnitude_errors: np.ndarray, flip: float) -> dict[str, Any] | None:
    """Median and mean |estimate - label|, flips; and median ||estimate| - |label||, which holds for labels that
    know |yaw| but not the side (CFP's profiles)."""
    known = np.isfinite(errors)
    errors = np.abs(errors[known])
    if not errors.size:
        return None
    return {"photos": int(errors.size), "median_abs": float(np.median(errors)), "mean_abs": float(errors.mean()),
            "flips": int((errors > flip).sum()),
            "median_abs_magnitude": float(np.median(np.abs(magnitude_errors[known])))}


# ---------------------------------------------------------------------------------------------- the whole run
def evaluate_photo_folder(folder: PhotoFolder, verifier: "Verifier", peers: Mapping[str, System] | None = None,
                          config: PhotoFolderConfig | None = None,
                          progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """The eval-photos report (JSON-ready): settings, per-photo results, and each system's rows."""
    config = (config or PhotoFolderConfig()).validate()
    peers = dict(peers or {})
    check_folder(folder, config)
    photos, embedded, unreadable = embed_folder(folder, verifier, peers, config, progress)
    warnings = check_folder(PhotoFolder(folder.root, photos), config)  # again, without the unreadable photos
    estimates = [e.yaw for e in embedded.ours]
    enrolments, enrol_warnings = choose_enrolments(photos, estimates, config)
    if not enrolments:
        raise Pose3DFRError(f"no identity has a frontal photo (|yaw| <= {config.frontal_max_yaw:g}): nothing to enrol")
    pairs = build_pairs([p.identity for p in photos], enrolments)
    if not pairs.probes.size:
        raise Pose3DFRError("every photo is its identity's enrolment: no probes to compare")
    group_yaws = [p.yaw_label if p.yaw_label is not None else e for p, e in zip(photos, estimates)]
    groups = np.array([group_of(y, config.groups) for y in group_yaws], dtype=object)
    yaw_errors = np.array([(wrapped_error(e, p.yaw_label), abs(e) - abs(p.yaw_label))
                           if e is not None and p.yaw_label is not None else (np.nan, np.nan)
                           for p, e in zip(photos, estimates)]).reshape(-1, 2)  # N x 2
    scores, accepted, evidence = ours_decisions(verifier, embedded.ours, pairs, config.far)
    systems = {OURS: {"label": f"pose3dfr ({verifier.name})",
                      "decision": f"the Verifier's own threshold for each pair at FAR {config.far:g} "
                                  "(ThresholdPolicy.decide_pair, as `pose3dfr verify` decides)",
                      "rows": system_rows(scores, accepted, np.array([e.embedding is not None for e in embedded.ours]),
                                          pairs, groups, config, evidence, yaw_errors)}}
    for key, system in peers.items():
        found = np.array([e is not None for e in embedded.peers[key]])
        peer_scores, peer_accepted = peer_decisions(system, embedded.peers[key], pairs)
        systems[key] = {"label": system.label, "decision": system.decision,
                        "rows": system_rows(peer_scores, peer_accepted, found, pairs, groups, config)}
    enrolled = set(enrolments.values())
    return {
        "folder": str(folder.root), "checkpoint": verifier.name, "far": config.far,
        "empirical_far": config.empirical_far, "groups": list(config.groups),
        "frontal_max_yaw": config.frontal_max_yaw,
        "identities": len({p.identity for p in photos}), "photos": len(photos),
        "labelled_probes": int(sum(photos[i].yaw_label is not None for i in pairs.probes)),
        "estimated_probes": int(sum(photos[i].yaw_label is None for i in pairs.probes)),
        "enrolments": {identity: photos[i].name for identity, i in enrolments.items()},
        "warnings": warnings + enrol_warnings,
        "skipped": [{"file": name, "reason": why} for name, why in folder.skipped + unreadable],
        "per_photo": [{"file": p.name, "identity": p.identity, "yaw_label": p.yaw_label, "yaw_estimate": e.yaw,
                       "group": groups[i], "role": "enrolment" if i in enrolled else "probe",
                       "faces_found": {OURS: e.embedding is not None,
                                       **{k: embedded.peers[k][i] is not None for k in peers}},
                       "error": e.error}
                      for i, (p, e) in enumerate(zip(photos, embedded.ours))],
        "systems": systems,
    }
