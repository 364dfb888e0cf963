"""`pose3dfr verify`: compare two face photos and print the verdict (or JSON)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pose3dfr.inference.verifier import Verifier
from pose3dfr.viz import pose_annotation


# ---------------------------------------------------------------------- command line
def run(args: argparse.Namespace) -> int:
    """`pose3dfr verify A B [--scan S] [--checkpoint NAME] [--far F] [--json]`: print the result; 0 on success."""
    verifier = Verifier.from_pretrained(args.checkpoint)
    result = verifier.verify(args.enroll, args.probe, scan=args.scan, far=args.far, enroll_face=args.enroll_face,
                             probe_face=args.probe_face, align=args.align, with_points=args.scan is not None)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    verdict = "MATCH" if result.match else "no match"
    print(f"{verdict}: score {result.score:.4f}, threshold {result.threshold:.4f} "
          f"({result.threshold_evidence} evidence)")
    for role, face, path in (("enroll", result.enroll, args.enroll), ("probe", result.probe, args.probe)):
        pose = pose_annotation(face.yaw, face.pitch, face.roll, face.bin) if face.yaw is not None else "pose unknown"
        print(f"  {role}: {Path(path).name}: face {face.face_index + 1} of {face.faces}, {pose}")
    print(f"  checkpoint: {result.checkpoint}; threshold: {result.threshold_source}")
    return 0
