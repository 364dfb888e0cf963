"""The About tab: the method, its citation, the shipped files' licences and what happens to uploads."""

from __future__ import annotations

import re

from pose3dfr.paths import ASSETS_DIR
from pose3dfr.ui.common import no_autolinks


ABOUT = """
## The method

pose3dfr reimplements **2D-3D Attention and Entropy for Pose Robust 2D Facial Recognition**
(J. Brennan Peace, Shuowen Hu, Benjamin S. Riggan, IEEE FG 2025). During training a 2D face network
(IResNet) and a point-cloud network (PointNet++) share the query and key projections of one self-attention
map (joint attention mapping, JAM); a joint-entropy loss pulls the two attention maps together, so the 2D
network learns which face regions stay reliable as the head turns. (This implementation registers the 3D map
to each training view and, where the regulariser is on, maximises the maps' mutual information: joint entropy
alone is minimised by flat attention.) At test time the 2D network alone
compares a frontal enrollment photo with a probe at any pose, up to full profile; a scan, when given,
only adds the 3D attention view.

```mermaid
flowchart LR
  I[2D face crop] --> B2[IResNet trunk] --> Z2[z_2D]
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

- **Pose routing.** `default` (3D branch, joint attention and its regulariser) and `default-2d` (its 2D-only twin) keep dlib's pretrained
  network beside the network fine-tuned on our renders. A pair of near-frontal faces (both under 22.5° of
  yaw) is scored by the pretrained network, unchanged, at dlib's published real-photo threshold; any other
  pair by the fine-tuned network, at thresholds measured per |yaw| on synthetic renders (the verdict says
  which). Every fine-tune we measured was worse than the pretrained network on real photos; it is better
  only at large yaw on renders.
- **Profiles.** A face the landmarker refuses is aligned from our head-pose net's pose and landmarks
  (`pose_fit`). End to end on held-out synthetic identities (`python -m benchmarks.end_to_end`), `default` accepts
  80% of genuine probes at 75° and 59% at 90° at 1% FAR (every 90° face found), within 5 points of crops
  aligned with ground-truth landmarks at every yaw; real profile photos are unmeasured.
- **3D guidance** pays at full profile, modestly (docs/results.md, section 8). In `default` the attention is used:
  gamma_2d 0.47, rows at 0.37 of the flat maximum, 15% of the 2D embedding, and removing it costs 2 points of
  held-out TAR at profile. That start (value conv at 0, gamma at 1) beat the paper's SAGAN start end to end at
  90° in each of 3 seeds (+5 points at 1% FAR), at the price of about a point at 45-75°. Against its 2D-only
  twin, end to end at 90° it gains +5.7 ± 2.4 points (3 seeds, every seed), on the held-out protocol
  +1.7 ± 1.3 (5 seeds); the paper reports +7 on real data. The largest lever was training dlib's last trunk
  level, not the 3D branch.
- **Thresholds** of the fine-tuned network hold on synthetic renders; on real profile photos the error rate
  is unmeasured.

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
