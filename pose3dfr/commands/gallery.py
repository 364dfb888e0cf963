"""`pose3dfr gallery build|search|add|remove`: 1:N galleries on disk (pose3dfr.inference.gallery, photos enrolled
and searched by pose3dfr.inference.identify)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from pose3dfr.errors import GalleryError
from pose3dfr.inference.gallery import Gallery
from pose3dfr.inference.gallery_files import IndexConfig
from pose3dfr.inference.identify import (EnrolReport, build_gallery, enrol_folder, enrol_photos, identity_photos,
                                         in_use, search_photo)
from pose3dfr.inference.verifier import Verifier

MAX_FAILURES_SHOWN = 20  # longer failure lists are cut, with a count of the rest


def build(args: argparse.Namespace) -> int:
    """Enrol FOLDER (<identity>/*.jpg) into a new gallery at --out."""
    out = Path(args.out)
    if (out / "gallery.json").exists() and not args.overwrite:
        raise GalleryError(f"{out.name}: a gallery exists there already (use --overwrite to replace it)")
    verifier = Verifier.from_pretrained(args.checkpoint)
    with _progress("enrolling", total=len(identity_photos(args.folder)[0])) as bar:
        gallery, report = build_gallery(verifier, args.folder, IndexConfig(kind=args.index), progress=bar.update)
    gallery.save(out)
    _print_report(report)
    print(f"gallery {out.name}: {len(gallery.names)} identities, {len(gallery)} templates, index {args.index}, "
          f"checkpoint {gallery.checkpoint}")
    return 0


def search(args: argparse.Namespace) -> int:
    """Top-K identities of the gallery for PHOTO, against the checkpoint's threshold (pose3dfr.eval.thresholds)."""
    gallery, verifier = _open(args.gallery, args.checkpoint)
    result = search_photo(gallery, verifier, args.photo, top_k=args.top, far=args.far)
    if args.json:
        print(json.dumps({"best": result.best and result.best.name, "threshold": result.threshold.value,
                          "far": result.threshold.far, "calibrated": result.threshold.calibrated,
                          "threshold_evidence": result.threshold.evidence, "threshold_source": result.threshold.source,
                          "probe_yaw": result.probe_yaw, "probe_bin": result.probe_bin,
                          "probe_faces": result.probe_faces, "probe_face_box": result.probe_box,
                          "matches": [{"name": m.name, "score": m.score, "match": m.match} for m in result.matches]},
                         indent=2))
        return 0
    verdict = f"identified: {result.best.name}" if result.best else "no one in the gallery"
    note = f", {result.threshold.evidence} evidence"
    yaw = "pose unknown" if result.probe_yaw is None else f"probe yaw {result.probe_yaw:+.1f}°"
    print(f"{verdict} (threshold {result.threshold.value:.4f} at FAR {result.threshold.far:g}{note}; {yaw})")
    if result.probe_faces > 1 and result.probe_box:
        x0, y0, x1, y1 = (round(v) for v in result.probe_box)
        print(f"  {result.probe_faces} faces in the photo: searched the largest, at x {x0}-{x1}, y {y0}-{y1} px")
    for rank, match in enumerate(result.matches, 1):
        print(f"  {rank:>2}. {match.name:<30} {match.score:.4f}{'  match' if match.match else ''}")
    return 0


def add(args: argparse.Namespace) -> int:
    """Enrol more photos: a folder of identities, or one photo under --name."""
    gallery, verifier = _open(args.gallery, args.checkpoint)
    source = Path(args.source)
    with _progress("enrolling", total=len(identity_photos(source)[0]) if source.is_dir() else 1) as bar:
        if source.is_dir():
            report = enrol_folder(gallery, verifier, source, progress=bar.update)
        elif args.name:
            report = enrol_photos(gallery, verifier, [(args.name, source)], progress=bar.update)
        else:
            raise GalleryError(f"{source.name}: give a folder of <identity>/<photo>, or a photo with --name")
    if sum(report.added.values()):
        gallery.save(args.gallery)
    _print_report(report)
    print(f"gallery {Path(args.gallery).name}: {len(gallery.names)} identities, {len(gallery)} templates")
    return 0 if sum(report.added.values()) else 1


def remove(args: argparse.Namespace) -> int:
    """Remove identities (all their templates)."""
    gallery = Gallery.load(args.gallery)
    removed = {name: gallery.remove(name) for name in args.names}
    gallery.save(args.gallery)
    for name, count in removed.items():
        print(f"removed {name} ({count} templates)")
    print(f"gallery {Path(args.gallery).name}: {len(gallery.names)} identities, {len(gallery)} templates")
    return 0


def _open(path: str, checkpoint: str | None) -> tuple[Gallery, Verifier]:
    """The gallery and a verifier of its checkpoint (by default the one it was built with; a mismatch is refused)."""
    gallery = Gallery.load(path)
    verifier = Verifier.from_pretrained(checkpoint or gallery.checkpoint)
    gallery.check_checkpoint(*in_use(verifier))
    return gallery, verifier


def _progress(what: str, total: int) -> tqdm:
    return tqdm(desc=what, total=total, unit="photo", leave=False)


def _print_report(report: EnrolReport) -> None:
    added = sum(report.added.values())
    print(f"enrolled {added} of {report.photos} photos ({len(report.added)} identities)")
    if report.failures:
        print(f"not enrolled ({len(report.failures)}):")
        for failure in report.failures[:MAX_FAILURES_SHOWN]:
            print(f"  {failure.identity}/{failure.photo}: {failure.reason}")
        if len(report.failures) > MAX_FAILURES_SHOWN:
            print(f"  ... and {len(report.failures) - MAX_FAILURES_SHOWN} more")
    if report.group_photos:  # a group photo enrols its largest face under the folder's name: maybe not that person
        print(f"warning: {len(report.group_photos)} photos show several faces; check that the largest is the person "
              "(or crop the photo):", file=sys.stderr)
        for photo in report.group_photos[:MAX_FAILURES_SHOWN]:
            print(f"  {photo.identity}/{photo.photo}: {photo.reason}", file=sys.stderr)
        if len(report.group_photos) > MAX_FAILURES_SHOWN:
            print(f"  ... and {len(report.group_photos) - MAX_FAILURES_SHOWN} more", file=sys.stderr)
