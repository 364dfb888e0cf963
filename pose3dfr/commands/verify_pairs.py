"""`pose3dfr verify-pairs PAIRS.csv --out SCORES.csv`: batch 1:1 verification for researchers.

PAIRS.csv has a header with columns `enroll` and `probe` (photo paths); other columns are ignored. Relative
paths are relative to the current folder, as for every other path on the command line, or to --root DIR
(e.g. `--root "$(dirname pairs.csv)"` for paths written relative to the CSV's folder). Each photo
is detected, aligned and embedded once however many pairs use it. SCORES.csv has one row per pair: enroll,
probe, score, threshold, match, enroll_yaw, probe_yaw, error (empty when fine; a pair whose photo failed gets
the reason and empty scores). The exit status is 1 when any pair failed (SCORES.csv is still written).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from tqdm import tqdm

from pose3dfr.errors import Pose3DFRError
from pose3dfr.inference.verifier import EmbeddedPhoto, Verifier

REQUIRED = ("enroll", "probe")
COLUMNS = ("enroll", "probe", "score", "threshold", "match", "enroll_yaw", "probe_yaw", "error")


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """(enroll, probe) path strings of a pairs CSV; Pose3DFRError without its two columns."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not set(REQUIRED) <= {f.strip() for f in reader.fieldnames}:
                raise Pose3DFRError(f"{path.name}: needs a header with columns {', '.join(REQUIRED)}")
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise Pose3DFRError(f"{path.name}: not a readable CSV ({exc.__class__.__name__})") from None
    return [(row["enroll"], row["probe"]) for row in rows]


def verify_pairs(args: argparse.Namespace) -> int:
    """Score every pair of the CSV and write the output; 0 when every pair was scored, 1 when any failed (the
    reasons are in its error column)."""
    pairs_path = Path(args.pairs)
    root = Path(args.root) if args.root else Path.cwd()
    pairs = read_pairs(pairs_path)
    verifier = Verifier.from_pretrained(args.checkpoint)
    verifier.threshold(args.far)  # a bad FAR fails before any photo is read
    photos = sorted({p for pair in pairs for p in pair if p})
    with tqdm(desc="photos", total=len(photos), unit="photo", leave=False) as bar:
        embedded = dict(zip(photos, verifier.embed_photos([root / p for p in photos], progress=bar.update)))
    rows = [_row(verifier, args.far, enroll, probe, embedded) for enroll, probe in pairs]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    failed = sum(1 for row in rows if row["error"])
    print(f"wrote {out} ({len(rows)} pairs, {len(photos)} photos, {failed} pairs with an error)")
    if failed:
        first = next(row for row in rows if row["error"])
        print(f"{failed} of {len(rows)} pairs failed (see the error column), e.g. {first['enroll']}, "
              f"{first['probe']}: {first['error']}", file=sys.stderr)
        return 1
    return 0


def _row(verifier: Verifier, far: float, enroll: str, probe: str, embedded: dict[str, EmbeddedPhoto]) -> dict:
    row = dict.fromkeys(COLUMNS, "")
    row.update(enroll=enroll, probe=probe)
    a, b = embedded.get(enroll), embedded.get(probe)
    errors = [f"{role}: {'empty path' if e is None else e.error}" for role, e in (("enroll", a), ("probe", b))
              if e is None or e.error]
    if errors:
        row["error"] = "; ".join(errors)
        return row
    decision = verifier.policy.decide_pair(far, a.embedding, b.embedding, a.yaw, b.yaw, probe_bin=b.bin)
    row.update(score=f"{decision.score:.6f}", threshold=f"{decision.threshold.value:.6f}",
               match=str(decision.match).lower(),
               enroll_yaw=_yaw(a.yaw), probe_yaw=_yaw(b.yaw))
    return row


def _yaw(yaw: float | None) -> str:
    return "" if yaw is None else f"{yaw:.1f}"
