"""ModelConfig: every switch of the Pose3DFR model, so the baseline and the ablations are one code path.

Each field the paper leaves open carries a one-line reason next to its default (see docs/models.md).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from pose3dfr.errors import Pose3DFRError
from pose3dfr.face.align import DETECTION_RULES

JE_VARIANTS = ("joint_entropy", "mutual_information", "floored_joint_entropy")
RESHAPES = ("grid", "global")
JE_RESCALES = ("n_squash", "minmax", "none")


@dataclass
class ModelConfig:
    """What to build: backbone, which branches/losses are on, and their hyper-parameters."""

    # --- backbone (2D branch) ---
    backbone: str = "ir18"  # paper: IR-Net-18 pretrained with AdaFace
    backbone_weights: str | None = None  # optional AdaFace .ckpt (ir18/ir50) loaded at construction
    num_classes: int = 100  # number of training identities (set by the training data)
    embedding_dim: int | None = None  # taken from the backbone; a set value must match it

    # --- switches (baseline / ablations) ---
    use_3d: bool = True  # 3D branch (PointNet++ + reshaping block + 3D identity loss)
    use_jam: bool = True  # shared query/key attention; off + use_je -> per-domain (unshared) attention
    use_je: bool = True  # joint-entropy (or MI) regulariser between A_2D and A_3D (needs use_3d)

    # --- joint entropy ---
    je_weight: float = 0.1  # lambda; small so the identity losses dominate and resist map collapse
    je_bins: int = 16  # 16 x 16 joint histogram: enough resolution, cheap, smooth gradients
    je_bandwidth: float = 1.0 / 32  # Gaussian kernel sigma = half a bin width on the [0, 1] scale
    # "joint_entropy" is the paper's loss. Alone it is minimised by flat attention and is blind to the 2D/3D
    # pairing (issue #18), so "mutual_information" (maximise H(A_2D) + H(A_3D) - H(A_2D, A_3D)) is on offer and
    # "floored_joint_entropy" (JE + hinge on each map's value entropy). Measured (tests/test_attention_regularisers.py,
    # docs/results.md section 8): optimising MI alone sharpens the maps without one-hot collapse and shuffling the
    # pairing raises the loss; JE alone flattens them and ignores the pairing. Hence the default; the named
    # config "paper" keeps the paper's joint entropy.
    je_variant: str = "mutual_information"
    je_entropy_floor: float = 1.0  # nats; floored_joint_entropy's floor on each map's value entropy (of ln 16 = 2.77)
    je_rescale: str = "n_squash"  # N*a/(1+N*a): rows are ~1/N, so uniform attention maps to 0.5
    je_max_entries: int = 4096  # paired entries sampled per image (N*N = 2401 for 7x7: all are used)

    # --- 3D branch ---
    num_points: int = 2048  # points per cloud fed to PointNet++ (training transform samples this many)
    point_features: int = 3  # 3 xyz, 6 +normals, 9 +normals +rgb
    reshape: str = "grid"  # "grid": geometric pooling aligned with the 2D chip; "global": linear ablation
    # "grid" pooling by each point's place in the view's own chip (pose3dfr.data.view_registration), where the
    # training data carries cameras: pooled by the frontal position instead, cell (i, j) of the 3D and of a
    # turned face's 2D map see different parts of the face (9% of landmarks share a cell at 45 degrees, 0% at 90).
    view_registration: bool = True
    sa1_centres: int = 512  # PointNet++ SSG level 1 centres (a quarter of 2048 points, as in PointNet++)
    sa1_radius: float = 2.0  # cm; PointNet++'s 0.2 on a unit sphere scaled to a ~18 cm face
    sa2_centres: int = 128  # level 2 centres
    sa2_radius: float = 4.0  # cm; PointNet++'s 0.4 scaled the same way
    point_group_size: int = 32  # neighbours per centre (k-nearest within the radius, order free)

    # --- attention (JAM) ---
    jam_reduction: int = 8  # query/key channels = C / 8, as in SAGAN
    jam_shared_gamma: bool = False  # one gamma per domain: the 3D map starts from scratch, 2D is pretrained
    jam_scaled: bool = True  # divide Q K^T by sqrt(d): keeps softmax unsaturated on 512-channel maps
    # SAGAN starts gamma at 0 (the attended map equals the input). A start at 0.1 was measured (docs/models.md):
    # the 2D loss pulled it back to about 0, so gamma moves by TrainConfig.attention_lr_mult instead.
    jam_gamma_init: float = 0.0
    # True: the value conv V_d starts at 0, so J_d = z_d at the start whatever gamma is; with jam_gamma_init=1 V
    # gets gradient from the first step. With SAGAN's start (gamma 0, V random) V gets none until gamma moves,
    # gamma's own gradient is V's random output, and the 2D loss kept gamma at about 0 (issue 18).
    jam_zero_value: bool = False

    # --- heads ---
    # The paper shares the compression + FC head between the 2D and 3D maps. Here the 3D map ends in BatchNorm
    # (half negative) while dlib's 2D map is post-ReLU, and the shared head lost ~5 TAR points to its 2D twin
    # (docs/results.md, sections 3 and 5): a separate 3D head is the default; the "paper" config shares it.
    share_head: bool = False
    # The separate 3D head's FC reads C x H_F x W_F values; set, a 1x1 conv first reduces the 3D map to this many
    # channels. SFace's 1024 x 7 x 7 map makes that FC 6.4 M weights (25.7 MB) for a head that only training and the
    # 3D view use; None keeps the FC on the full map (dlib's 128 x 8 x 8 map: 1.0 M).
    head_3d_channels: int | None = None
    adaface_m: float = 0.4  # AdaFace defaults (Kim et al., CVPR 2022)
    adaface_h: float = 0.333
    adaface_s: float = 64.0
    adaface_t_alpha: float = 0.01  # EMA rate of the feature-norm statistics, as in AdaFace training
    # AdaFace starts the norm statistics at mean 20 / std 100; dlib's features have norms near 0.7, so over a CPU
    # schedule the EMA stays far off and the adaptive margin is about fixed (issue #18). True sets them from the
    # first training batch. Measured (2D twin, seed 0, 300 steps, validation TAR@1% [0,30)/[90,+)): 96.5/22.2 with
    # AdaFace's start, 0.0/1.4 from the batch (the spread of pretrained norms is tiny, so z_hat saturates at +-1
    # and half the batch gets margin 0.8): off.
    adaface_norm_from_batch: bool = False

    # --- embedding (issue #17) ---
    # embed() averages the trained network's embedding of a chip and of its mirror image (the teacher's is left
    # as dlib computes it). End to end (docs/results.md section 6, docs/profile_schedule.md), TAR@1% at 60/75/90
    # degrees: 86/78/46 without, 90/80/52 with (jam, 600 steps; twin 80/69/39 -> 82/72/44), for twice the
    # embedding cost. Checkpoints written before this field embed without it (models/io.py).
    flip_average: bool = True

    # --- inference pipeline ---
    # How the Verifier (and training/evaluation on pipeline crops) align a detected face (pose3dfr.face.align
    # .align_detection): "pipeline", the project's pose-aware rule (the landmarker's five points near frontal, the
    # head-pose net's pose_fit at profile), or "keypoints", YuNet's five keypoints at every yaw (OpenCV's alignCrop:
    # how SFace is used on real photos; pose-aware crops for it have no real-photo check at large yaw).
    alignment: str = "pipeline"

    # --- frontal teacher (issue #19: real faces must not pay for synthetic training) ---
    # Keep a frozen copy of the pretrained 2D backbone and score near-frontal pairs with it (pose routing,
    # pose3dfr.models.frontal_gate): every fine-tune measured lost real-photo separation, while the pretrained
    # network is what real-photo benchmarks (LFW) validate for frontal faces.
    frontal_teacher: bool = False
    # The teacher's weights: a file in checkpoints/ (or a path). Loaded, never stored in a checkpoint: it is
    # dlib's shipped network, so a routed checkpoint holds only what training changed.
    teacher_weights: str = "dlib_resnet.safetensors"
    # Pairs whose larger |yaw| is below this are scored by the teacher: the near-frontal faces its published
    # real-photo threshold was measured on. 22.5 lies midway between the renders' 15 and 30 degree views, so the
    # pose estimate's few degrees of error never split a protocol bin between the two networks, whose scores
    # run on different scales (at 30, half the 30-degree probes went to the teacher: [30,60) TAR 0.21 vs 0.77).
    route_yaw: float = 22.5
    # The teacher's cosine enters the routed score as teacher_scale * cosine + teacher_shift: the fine-tuned
    # network's scale, fitted at publishing (eval.evaluate.fit_routing) so one threshold per pose bin holds even
    # when the pose estimate sends a profile face to the teacher (its cosines run higher: dlib's sit above 0.8).
    teacher_scale: float = 1.0
    teacher_shift: float = 0.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise Pose3DFRError naming the field when a value cannot work."""
        if not 0.0 < self.route_yaw <= 180.0:
            raise Pose3DFRError(f"ModelConfig.route_yaw={self.route_yaw}: must be in (0, 180] degrees")
        if self.je_variant not in JE_VARIANTS:
            raise Pose3DFRError(f"ModelConfig.je_variant={self.je_variant!r}; choose from {JE_VARIANTS}")
        if self.reshape not in RESHAPES:
            raise Pose3DFRError(f"ModelConfig.reshape={self.reshape!r}; choose from {RESHAPES}")
        if self.je_rescale not in JE_RESCALES:
            raise Pose3DFRError(f"ModelConfig.je_rescale={self.je_rescale!r}; choose from {JE_RESCALES}")
        if self.alignment not in DETECTION_RULES:
            raise Pose3DFRError(f"ModelConfig.alignment={self.alignment!r}; choose from {DETECTION_RULES}")
        if self.point_features not in (3, 6, 9):
            raise Pose3DFRError(f"ModelConfig.point_features={self.point_features}; must be 3, 6 or 9")
        if self.head_3d_channels is not None and self.head_3d_channels < 1:
            raise Pose3DFRError(f"ModelConfig.head_3d_channels={self.head_3d_channels}: must be >= 1 or None")
        if self.num_classes < 1:
            raise Pose3DFRError(f"ModelConfig.num_classes={self.num_classes}; must be >= 1")
        if self.je_bins < 2 or self.je_bandwidth <= 0:
            raise Pose3DFRError("ModelConfig.je_bins must be >= 2 and je_bandwidth > 0")
        if self.use_je and not self.use_3d:
            raise Pose3DFRError("ModelConfig.use_je needs use_3d (joint entropy compares A_2D with A_3D)")
        if self.num_points < self.sa1_centres or self.sa1_centres < self.sa2_centres:
            raise Pose3DFRError("ModelConfig needs num_points >= sa1_centres >= sa2_centres")

    @property
    def registers_views(self) -> bool:
        """Training pools the 3D map by each view's registered cells (3D branch with grid reshaping)."""
        return self.use_3d and self.view_registration and self.reshape == "grid"

    @property
    def has_attention(self) -> bool:
        """An attention module exists when JAM is on or JE needs attention maps."""
        return self.use_jam or self.use_je

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Build from a dict (e.g. a checkpoint's JSON); unknown keys are an error, not silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise Pose3DFRError(f"unknown ModelConfig fields {unknown}")
        return cls(**data)
