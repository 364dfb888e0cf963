"""The About tab: the method, its citation, the shipped files' licences and what happens to uploads."""

from __future__ import annotations

import re

from pose3dfr.paths import ASSETS_DIR
from pose3dfr.ui.common import no_autolinks


ABOUT = """
## The method

pose3dfr reimplements **2D-3D Attention and Entropy for Pose Robust 2D Facial Recognition**
(J. Brennan Peace, Shuowen Hu, Benjamin S. Riggan, IEEE FG 2025). During training a 2D face network
(IResNet in the paper; OpenCV Zoo's SFace in `sface-guided`) and a point-cloud network (PointNet++) share the query and key projections of one self-attention
map (joint attention mapping, JAM); a joint-entropy loss pulls the two attention maps together, so the 2D
network learns which face regions stay reliable as the head turns. (This implementation registers the 3D map
to each training view and, where the regulariser is on, maximises the maps' mutual information: joint entropy
alone is minimised by flat attention.) At test time the 2D network alone
compares a frontal enrollment photo with a probe at any pose, up to full profile; a scan, when given,
only adds the 3D attention view.

```mermaid
flowchart LR
  I[2D face crop] --> B2[2D trunk: IResNet / SFace] --> Z2[z_2D]
  P[3D point cloud] --> B3[PointNet++ + reshaping block] --> Z3[z_3D]
  Z2 --> J[JAM: shared Q, K]
  Z3 --> J
  J --> A2[attention A_2D] --> E2[2D embedding + AdaFace loss]
  J --> A3[attention A_3D] --> E3[3D embedding + AdaFace loss]
  A2 --> JE[attention regulariser: JE in the paper, MI here]
  A3 --> JE
  E2 --> V[test time: cosine score of 2D embeddings]
```

## What the shipped models do (and do not)

Numbers say what they were measured on: **real photos** or **synthetic renders** (our own renders of synthetic
heads; they teach, but say nothing about what a real photo gets). Each names its command.

- **`default` is OpenCV Zoo's SFace**, a network trained on real faces (Apache-2.0), ported to PyTorch with the
  same embedding (cosine >= 0.9999 against onnxruntime: `docs/sface_port.md`) and run as OpenCV runs it: YuNet
  finds the face, its five keypoints align a 112 px crop, no mirror average. On the project owners' hidden real
  photos (61 people, frontal to 90°) this network with OpenCV's pipeline accepted 67% of genuine pairs at 75-90°
  with 0.1% impostors, where the retired dlib-based default reached 22% with 2.5%; `default` itself has not been
  measured on that set. Around the network pose3dfr adds YuNet retries, face checks and head pose.
- **Thresholds.** Every pair is decided at OpenCV's published rule for real photos, cosine >= 0.363 (chosen on
  LFW), at every yaw and for both FARs offered; the false accept rate it gives on real photos is stated neither
  upstream nor measured here, and each answer says so. Thresholds measured on renders are used only by the
  render benchmarks (`docs/inference.md`, `pose3dfr.eval.thresholds`).
- **Real photos measured here**: the 7 shipped photos of 3 people, all within 30° of frontal: 108/108
  same-person and 0/252 different-person pairs accepted, AUC 1.000 (`pose3dfr photos --checkpoint default`).
  Real turned photos do not ship; measure yours with `pose3dfr eval-photos FOLDER` (OpenCV's and dlib's
  pipelines on the same photos beside it).
- **Renders only** (20 held-out synthetic identities, 780 renders, through the whole pipeline): at 90° `default`
  finds 120 of 120 faces where OpenCV's own YuNet call finds 102, and accepts 40 of 120 genuine pairs against
  OpenCV's 28; the two agree within a point or two elsewhere (`pose3dfr eval-photos data/synth200 --split test
  --max-identities 20`). At OpenCV's real-photo threshold 95% of render impostors are accepted near frontal:
  synthetic heads look alike to a real-face network, so render thresholds are measured separately.
- **Head pose** (our own net; none that covers profiles ships offline): within 3° on renders at every yaw
  (`python -m benchmarks.headpose_eval`), but real 90° profiles read at a median of 64-68° on the owners' photos,
  and real faces turned to known yaws from the shipped photos read up to 24° short at 75-90°
  (`docs/headpose.md`). With `default` the pose only labels the answer: alignment and threshold do not use it.
- **Heatmaps** show each 7 x 7 cell's share of the embedding (`docs/attention.md`): greying the hottest cells
  moves `default`'s embedding sooner than greying random cells on all 130 renders and 7 photos measured
  (deletion AUC 0.70 against 0.48 on renders, 0.53 against 0.39 on photos;
  `python -m benchmarks.attention_faithfulness`). The old map drew an attention sink in the left column.
- **3D guidance** (the paper's idea) is measured on renders only: `sface-guided`, the paper's model on SFace's 7 x 7
  map (joint attention, 3D branch and mutual-information regulariser; SFace's trunk frozen), against its 2D twin
  trained the same way, 3 seeds paired: +2.8 points of TAR@1% at [30,60) held out and on fresh identities, +4.6 end
  to end at 45°, but nothing at profile (+0.05 ± 0.29 held out, +0.19 ± 0.58 on fresh identities at [90,+), -1.9 ±
  1.3 end to end at 90°), where the paper reports +7.1 on FaceScape. The attention is used (gamma 1.0, 44% of the
  embedding) and the shipped photos keep their separation (margin +0.370 against SFace's +0.345), but real turned
  faces are unmeasured, so it does not decide real photos (`docs/results.md` section 9, `pose3dfr ablate ...
  --variants sface-2d sface-full`).

## Citation

```bibtex
@inproceedings{peace2025pose3dfr,
  title     = {2D-3D Attention and Entropy for Pose Robust 2D Facial Recognition},
  author    = {Peace, J. Brennan and Hu, Shuowen and Riggan, Benjamin S.},
  booktitle = {IEEE International Conference on Automatic Face and Gesture Recognition (FG)},
  year      = {2025},
  note      = {arXiv:2505.09073}
}
```
"""


# Hex digits of a sha256 shown in the About tab's licence table: a 64-character token leaves the other
# columns one character wide; the full digests stay in assets/NOTICE.md.
SHA_SHOWN = 12


def licences_markdown() -> str:
    """The shipped files' provenance and licences, from assets/NOTICE.md (sha256 digests shortened so that
    the table stays readable; no autolinks)."""
    notice = ASSETS_DIR / "NOTICE.md"
    if not notice.is_file():
        return "assets/NOTICE.md is missing."
    text = re.sub(r"`([0-9a-f]{%d})[0-9a-f]{%d}`" % (SHA_SHOWN, 64 - SHA_SHOWN), r"`\1…`", notice.read_text())
    return no_autolinks(text) + "\n\n(sha256 shortened here; the full digests are in `assets/NOTICE.md`.)"


STORAGE_NOTE = ("**Your photos and scans are not kept:** each upload and every face image made from it is deleted "
                "from the server once the answer is sent (anything left over within 55 s); nothing is logged.")
