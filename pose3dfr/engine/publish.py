"""Publish a finished training run as a shipped checkpoint: `<name>.safetensors`, `<name>.json`, `<name>.md`.

The JSON keeps the run's config and calibrated thresholds and adds what a user of the weights needs to
trust them: the command that made them, the data (generator seed, manifest sha256, split sizes), results
per pose bin on held-out identities, the real-photo check, and the sha256 every load verifies. The model
card (`<name>.md`) is written from that JSON, so the two never disagree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pose3dfr.errors import DatasetError
from pose3dfr.paths import CHECKPOINTS_DIR

METHOD = {
    "baseline-2d": "2D only: the backbone and an AdaFace head, no 3D branch and no attention (the twin without 3D guidance)",
    "jam": "2D + 3D branch with the shared joint attention map (JAM), no attention regulariser",
    "je": "2D + 3D branch with per-domain attention tied by the attention regulariser",
    "full": ("the paper's method as this project runs it: 2D + 3D branch, joint attention map (JAM), and the "
             "attention regulariser (the configured `je_variant`: mutual information by default, where the paper "
             "minimises joint entropy), with the 3D grid registered to each training view"),
    "paper": "the paper's exact method: 2D + 3D branch, JAM, joint-entropy loss, shared head, frontal 3D grid",
    "sface-full": ("the paper's method on SFace's 1024 x 7 x 7 map: 2D + 3D branch, joint attention map (JAM) and "
                   "the attention regulariser (mutual information), SFace's trunk frozen"),
    "sface-2d": "SFace with its own head fine-tuned, no 3D branch and no attention (the twin without 3D guidance)",
}
# What each pretrained start is, for the card's "Training" section.
PRETRAINED_STARTS = {
    "dlib_resnet": "dlib's ResNet, trained by Davis King on about 3 million real face photos",
    "sface": ("OpenCV Zoo's SFace, trained on real face photos (which data set is not documented upstream); "
              "checkpoints/sface-pretrained.md"),
}
CITATION = ('I. Peace, S. Hu, B. S. Riggan. "2D-3D Attention and Entropy for Pose Robust 2D Facial Recognition." '
            "IEEE FG 2025.")


def data_provenance(data_root: str | Path) -> dict[str, Any]:
    """Generator, seed, manifest sha256 and identities per split of a data set root (its manifest.json)."""
    from pose3dfr.models.io import file_sha256

    manifest_path = Path(data_root) / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{manifest_path}: cannot read the data set manifest ({exc})") from None
    splits = manifest.get("splits") or {}
    return {"root": str(data_root), "generator": manifest.get("generator"), "version": manifest.get("version"),
            "seed": manifest.get("seed"), "arguments": manifest.get("arguments"),
            "manifest_sha256": file_sha256(manifest_path),
            "identities": {split: len(ids) for split, ids in splits.items()}}


def publish_run(run_dir: str | Path, name: str, data_root: str | Path, command: str,
                out_dir: str | Path = CHECKPOINTS_DIR, split: str = "test", twin: str | None = None,
                check_photos: bool = True, frontal_teacher: bool = False) -> Path:
    """Copy `run_dir/model.*` to `out_dir/<name>.*` with the enriched JSON and a model card; returns the weights.

    Held-out results come from `run_dir/<split>_eval.json` (written by `pose3dfr ablate`) or are computed.
    frontal_teacher=True attaches pose routing to a run trained without it (the teacher takes no part in
    training, so the weights are those of the run): a run of the ablation ships as it was measured there.
    """
    from pose3dfr.models.io import load_model, read_meta, save_model

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    model, meta = load_model(run_dir / "model.safetensors")  # checks the run's sha256
    attached = frontal_teacher and getattr(model, "routing", None) is None
    if attached:
        model = with_frontal_teacher(model)
    extra = dict(meta.get("extra") or {})
    if attached:
        extra["frontal_teacher_attached_at_publishing"] = True
    if getattr(model, "routing", None) is not None:  # the teacher's scores onto the fine-tuned scale, before calibrating
        from pose3dfr.eval.evaluate import fit_routing

        extra["routing"] = fit_routing(model, data_root)
    validation = _evaluate(model, data_root, "val")  # thresholds under the current protocol, not training's
    extra.update(training_command=command, data=data_provenance(data_root), twin=twin,
                 calibration=with_real_photo_rule(model, validation["calibration"]),
                 validation={"split": "val", "overall": validation["overall"], "bins": validation["bins"]},
                 test_results=_held_out_results(run_dir, model, data_root, split, reuse=not attached))
    if getattr(model, "attention", None) is not None:
        extra["attention_removed"] = _attention_removed_results(model, data_root, split)
    if check_photos:
        extra["real_photos"] = _photo_check(model, {**meta, "extra": extra}, name)
    weights = save_model(model, out_dir / name, extra)
    published = read_meta(out_dir / name)
    (out_dir / f"{name}.md").write_text(model_card(name, published))
    return weights


def _evaluate(model: Any, data_root: str | Path, split: str) -> dict[str, Any]:
    from pose3dfr.eval.config import EvalConfig
    from pose3dfr.eval.evaluate import evaluate_split

    return evaluate_split(model, data_root, EvalConfig(split=split))


def with_frontal_teacher(model: Any) -> Any:
    """The same trained weights with pose routing (a frontal teacher, pose3dfr.models.frontal_gate) attached."""
    from dataclasses import replace

    from pose3dfr.models.pose3dfr import Pose3DFR

    routed = Pose3DFR(replace(model.cfg, frontal_teacher=True), load_pretrained=False)
    routed.load_state_dict(model.state_dict())  # the teacher is not in a state dict: loaded from its own file
    return routed.eval()


def _held_out_results(run_dir: Path, model: Any, data_root: str | Path, split: str,
                      reuse: bool = True) -> dict[str, Any]:
    """`run_dir/<split>_eval.json` (written by `pose3dfr ablate`), else a fresh evaluation written there.
    reuse=False (the published model is not the run's: routing attached): evaluated fresh, the run's report kept."""
    from pose3dfr.eval.reports import write_reports

    path = run_dir / f"{split}_eval.json"
    if reuse and path.is_file():
        results = json.loads(path.read_text())
    else:
        results = _evaluate(model, data_root, split)
        if reuse:
            write_reports(results, path)
    return {"split": split, "overall": results["overall"], "bins": results["bins"],
            "protocol": results.get("protocol")}


def _attention_removed_results(model: Any, data_root: str | Path, split: str) -> dict[str, Any]:
    """Held-out results with every attention gamma set to 0: what the attention contributes (issue #18)."""
    with model.attention.removed():
        results = _evaluate(model, data_root, split)
    return {"split": split, "overall": results["overall"], "bins": results["bins"]}


def with_real_photo_rule(model: Any, calibration: dict[str, Any]) -> dict[str, Any]:
    """The calibration plus dlib's real-photo rule for the bins a frontal teacher (dlib's own weights) scores."""
    from pose3dfr.eval.calibration import teacher_real_photo_rule
    from pose3dfr.models.dlib_resnet import DLIB_RESNET_WEIGHTS
    from pose3dfr.models.io import file_sha256
    from pose3dfr.models.pose3dfr import resolve_teacher_weights

    routing = getattr(model, "routing", None)
    if routing is None or model.cfg.backbone != "dlib_resnet":
        return calibration
    if file_sha256(resolve_teacher_weights(model.cfg.teacher_weights)) != file_sha256(DLIB_RESNET_WEIGHTS):
        return calibration  # a teacher other than dlib's published network: its rule does not carry over
    return {**calibration, "real_photos": teacher_real_photo_rule(routing)}


def _photo_check(model: Any, meta: dict[str, Any], name: str) -> dict[str, Any]:
    """The real-photo regression check (pose3dfr.eval.real_photos) at the calibration being published."""
    from pose3dfr.eval.real_photos import real_photo_check
    from pose3dfr.inference.verifier import Verifier

    return real_photo_check(Verifier(model, meta, name=name))


def model_card(name: str, meta: dict[str, Any]) -> str:
    """The Markdown model card of a published checkpoint, from its JSON."""
    from pose3dfr.eval.reports import results_markdown

    cfg, extra = meta["config"], meta.get("extra") or {}
    train_config = extra.get("train_config") or {}
    variant = train_config.get("model", "?")
    data, test = extra.get("data") or {}, extra.get("test_results") or {}
    method = METHOD.get(variant, variant)
    if cfg.get("use_3d") and not cfg.get("share_head", True):
        method += (" - with one change: the 3D branch has its own compression head (`share_head=false`) instead "
                   "of sharing the 2D one, which cost the 2D model accuracy in our runs (docs/results.md)")
    if cfg.get("use_jam") and cfg.get("jam_zero_value"):
        method += (f"; the attention starts with its value conv at 0 and gamma at {cfg.get('jam_gamma_init'):g} "
                   "(`jam_zero_value`), so the network uses it from the first step (docs/results.md section 8)")
    what = (f"a {cfg.get('embedding_dim')}-D unit embedding and an attention heatmap out; two faces match when "
            "the cosine of their embeddings reaches the calibrated threshold.")
    if cfg.get("frontal_teacher"):
        what = (f"a {2 * cfg.get('embedding_dim') + 1}-D embedding (the pretrained network's and the fine-tuned "
                f"one's side by side, pose3dfr.models.frontal_gate) and an attention heatmap out. **Pose routing:** a pair whose larger |yaw| is below "
                f"{cfg.get('route_yaw'):g} degrees is scored by dlib's pretrained network, unchanged, with dlib's "
                "published real-photo threshold; any other pair by the fine-tuned network with its thresholds "
                "calibrated per pose bin on synthetic validation renders (pose3dfr.models.frontal_gate; the "
                "pretrained network's cosine is mapped onto the fine-tuned scale, order unchanged). Every "
                "fine-tune measured lost real-photo separation; routing keeps the pretrained network where real "
                "photos need it (docs/results.md section 7).")
    lines = [f"# Model card: `{name}`", "",
             f"**What it is.** {method}, on the `{cfg['backbone']}` backbone (pose3dfr "
             f"model config `{variant}`). At test time only the 2D network runs: a photo in, {what}",
             "", f"Weights: `{name}.safetensors`, sha256 `{meta['weights_sha256']}` (checked on every load). "
             f"Config, thresholds and results: `{name}.json`.", ""]
    if extra.get("twin"):
        side = "with" if variant == "baseline-2d" else "without"
        lines += [f"Twin: `{extra['twin']}` is the same backbone, data and schedule {side} the 3D guidance; "
                  "docs/results.md compares the two over seeds.", ""]
    lines += _intended_use(bool(train_config.get("pretrained"))) + _training_section(extra, data, train_config, cfg["backbone"])
    if test:
        lines += ["## Held-out results", "", results_markdown(test, title=f"Verification by probe pose "
                                                                     f"({test.get('split')} identities)"), ""]
    lines += _attention_section(extra)
    lines += _thresholds_section(extra.get("calibration")) + _photos_section(extra.get("real_photos"))
    lines += _limitations(bool(cfg.get("frontal_teacher")), cfg["backbone"]) + _licences(cfg["backbone"])
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def _intended_use(pretrained: bool = True) -> list[str]:
    trained = ("was fine-tuned on synthetic faces only (from a network pretrained on real faces)" if pretrained
               else "was trained on synthetic faces only")
    return ["## Intended use", "",
            "Research and demonstration of pose-robust face verification (frontal enrollment photo against "
            "a probe at any yaw up to profile), and a starting point for training on real multi-view data. "
            f"Not for decisions about people (access control, policing, identification of individuals): it "
            f"{trained} and its error rates on real populations are unmeasured.", ""]


def _training_section(extra: dict[str, Any], data: dict[str, Any], train_config: dict[str, Any],
                      backbone: str = "dlib_resnet") -> list[str]:
    ids = data.get("identities") or {}
    return ["## Training", "",
            f"- Command: `{extra.get('training_command', '?')}`",
            f"- Data: `{data.get('generator')}` {data.get('version')} (the project's synthetic multi-view "
            f"benchmark), seed {data.get('seed')}, manifest sha256 `{data.get('manifest_sha256')}`; identities "
            f"train/val/test = {ids.get('train')}/{ids.get('val')}/{ids.get('test')} (disjoint).",
            f"- Start: `{train_config.get('pretrained')}` ({PRETRAINED_STARTS.get(backbone, 'pretrained weights')}), "
            f"freeze = `{train_config.get('freeze')}`, {train_config.get('steps')} steps x "
            f"batch {train_config.get('batch_size')}, {train_config.get('optimizer')} lr {train_config.get('lr')}, "
            f"seed {train_config.get('seed')}.", ""]


def _attention_section(extra: dict[str, Any]) -> list[str]:
    """Is the attention active? The last training diagnostics and the held-out TAR with it removed."""
    diagnostics, removed, test = extra.get("diagnostics") or {}, extra.get("attention_removed"), extra.get("test_results")
    if "gamma_2d" not in diagnostics and not removed:
        return []
    lines = ["## Attention", ""]
    if "gamma_2d" in diagnostics:
        lines += [f"At the end of training (pose3dfr.engine.diagnostics): gamma_2d {diagnostics['gamma_2d']:+.4f}, "
                  f"A_2D row entropy {diagnostics.get('attn_entropy_2d', float('nan')):.3f} of the uniform maximum, "
                  f"the attention changes the 2D embedding by {100 * diagnostics.get('attention_share', 0.0):.1f}% "
                  "of its norm.", ""]
    if removed and test:
        lines += ["TAR @ 1% FAR on the held-out identities, with the attention and with every gamma set to 0:", "",
                  "| | " + " | ".join(test["bins"]) + " | overall |", "|---|" + "---|" * (len(test["bins"]) + 1)]
        for label, results in (("with attention", test), ("attention removed", removed)):
            cells = [results["bins"][b].get("tar_at_far_1e-2") for b in test["bins"]]
            cells.append(results["overall"].get("tar_at_far_1e-2"))
            lines.append(f"| {label} | " + " | ".join("n/a" if c is None else f"{100 * c:.2f}" for c in cells) + " |")
        lines.append("")
    return lines


def _thresholds_section(calibration: dict[str, Any] | None) -> list[str]:
    if not calibration:
        return []
    per_far = calibration.get("far") or {}
    bins = sorted({b for entry in per_far.values() for b in (entry.get("bins") or {})})
    lines = ["## Calibrated thresholds (cosine, accept when score >= threshold)", "",
             "Measured on synthetic validation renders (identities disjoint from training and test), per probe "
             "|yaw| bin, through the real pipeline.", "",
             "| FAR | overall | " + " | ".join(bins) + " |", "|---|---|" + "---|" * len(bins)]
    for far, entry in per_far.items():
        cells = [_fmt(entry.get("overall"))] + [_fmt((entry.get("bins") or {}).get(b)) for b in bins]
        lines.append(f"| {float(far):g} | " + " | ".join(cells) + " |")
    lines += _yaw_curve_lines(per_far)
    rule = calibration.get("real_photos")
    if isinstance(rule, dict):
        where = ("pairs the pretrained network scores (pose routing)" if rule.get("route") == "teacher"
                 else "probes in " + ", ".join(rule.get("bins") or []))
        cosine = f" (dlib cosine {rule['teacher_cosine']:.4f} on the routed scale)" if "teacher_cosine" in rule else ""
        lines += ["", f"Real photos: at FAR {rule.get('far'):g}, {where} use {rule.get('threshold'):.4f}{cosine}, "
                      f"{rule.get('source')}."]
    return lines + [""]


def _yaw_curve_lines(per_far: dict[str, Any]) -> list[str]:
    """The yaw curve table: what the Verifier interpolates at a probe's estimated |yaw| (eval.calibration)."""
    curves = {far: entry["yaw_curve"] for far, entry in per_far.items()
              if isinstance(entry.get("yaw_curve"), dict) and entry["yaw_curve"].get("yaw")}
    if not curves:
        return []
    yaws = sorted({float(y) for c in curves.values() for y in c["yaw"]})
    lines = ["", "Per |yaw| (the points the Verifier interpolates at a probe's estimated |yaw|; a FAR's point is "
                 "measured only where the group has at least 1 / FAR impostor pairs):", "",
             "| FAR | " + " | ".join(f"{y:g}°" for y in yaws) + " |", "|---|" + "---|" * len(yaws)]
    for far, curve in curves.items():
        at = {float(y): t for y, t in zip(curve["yaw"], curve["threshold"])}
        lines.append(f"| {float(far):g} | " + " | ".join(_fmt(at.get(y)) for y in yaws) + " |")
    return lines


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"


def _photos_section(photos: dict[str, Any] | None) -> list[str]:
    if not photos or "auc" not in photos:
        return []
    from pose3dfr.eval.real_photos import CHECK_HEADER, check_row

    lowest = sorted(photos["genuine"].items(), key=lambda kv: kv[1])[:3]
    highest = sorted(photos["impostor"].items(), key=lambda kv: -kv[1])[:3]
    return ["## Real photos (`pose3dfr photos`)", "",
            f"The shipped real photographs of three people and their degraded versions ({', '.join(photos['variants'])}): "
            f"{photos['same_pairs']} same-person pairs (between different photographs) and {photos['different_pairs']} "
            f"different-person pairs, decided at this checkpoint's own threshold for each probe's pose. Every "
            f"same-person pair above every different-person pair: **{'yes' if photos['separated'] else 'no'}**.", "",
            CHECK_HEADER, check_row("this checkpoint", photos), "",
            "Hardest same-person pairs: " + ", ".join(f"{k} {v:.3f}" for k, v in lowest) + ".",
            "Hardest different-person pairs: " + ", ".join(f"{k} {v:.3f}" for k, v in highest) + ".", ""]


def _limitations(routed: bool = True, backbone: str = "dlib_resnet") -> list[str]:
    if routed:
        real = ("Only pairs the pretrained network scores (pose routing) use a threshold measured on real photos "
                "(dlib's, on LFW).")
    else:
        real = ("No threshold of this checkpoint rests on real photos: every pair is decided at a threshold measured "
                "on renders only, whose false accept rate on real photos is unknown"
                + (" (OpenCV's published cosine 0.363 is SFace's own, not this fine-tune's)." if backbone == "sface"
                   else "."))
    return ["## Limitations", "",
            "- The fine-tuned network was trained and calibrated on synthetic renders: its thresholds stand for "
            f"the stated FAR on the synthetic benchmark only, and the app says so. {real} Calibrate "
            "on your own data for anything else (`pose3dfr calibrate`).",
            "- Short CPU training (minutes), a small 3D branch (512 points) and a frozen trunk: far from the "
            "paper's schedule on FaceScape; see docs/results.md for what 3D guidance did and did not buy.",
            "- The synthetic identities vary in shape and texture but not in age, ethnicity-specific "
            "morphology or hair as real data sets do; accuracy on real populations is unmeasured.", ""]


def _licences(backbone: str) -> list[str]:
    lines = ["## Licences and citation", ""]
    if backbone == "dlib_resnet":
        lines.append("- Backbone weights derive from dlib's `dlib_face_recognition_resnet_model_v1` by Davis "
                     "King, CC0-1.0 (see assets/NOTICE.md).")
    if backbone == "sface":
        lines.append("- Backbone weights derive from OpenCV Zoo's SFace (`face_recognition_sface_2021dec`, Yaoyao Zhong "
                     "et al.), Apache-2.0; the data it was trained on is not documented upstream (see "
                     "assets/NOTICE.md).")
    lines += ["- Synthetic training faces derive from MediaPipe's canonical face mesh, Apache-2.0 (Google LLC).",
              f"- Method: {CITATION}", ""]
    return lines


