"""Our own head-pose and profile-landmark network: yaw, pitch, roll and 7 alignment landmarks with visibility
at every yaw (MediaPipe's landmarker degrades past ~60 degrees), from a square crop around a YuNet box.

The net (`HeadPoseNet`, ~0.8 M parameters, 64 px input) regresses a 6D rotation (two columns of R,
Gram-Schmidt to a matrix; 6DRepNet) so there is no Euler-angle wrap near profile, plus landmark positions
in crop units and visibility logits; the crop around a box is `pose_crop`. The estimator that runs it on
photos is estimator.py; it is trained by `pose3dfr train-headpose` (train.py) on crops of data.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pose3dfr.errors import Pose3DFRError
from pose3dfr.face.landmarks import LANDMARK_NAMES

INPUT_SIZE = 64  # crop side (px): enough for pose and landmark positions, cheap on CPU
CROP_FACTOR = 1.6  # crop side / longer YuNet box side: the whole head (ears, hair outline) tells yaw at profile
# Index of each landmark's mirror partner: a mirrored image swaps the subject's right and left.
MIRROR_PERMUTATION: tuple[int, ...] = (1, 0, 2, 4, 3, 5, 6)
MIRROR = torch.diag(torch.tensor([-1.0, 1.0, 1.0]))  # x -> -x in both the camera and the face frame: R -> M R M


@dataclass
class HeadPoseNetConfig:
    """Architecture of HeadPoseNet (recorded in the checkpoint's JSON)."""

    input_size: int = INPUT_SIZE
    widths: tuple[int, ...] = (16, 32, 64, 128)  # channels of the stem and the three stride-2 stages
    blocks_per_stage: int = 1  # residual blocks per stage (one: ~11 M multiply-adds, trainable on a CPU)
    hidden: int = 256  # width of the shared fully connected layer (keeps the spatial layout for landmarks)
    num_landmarks: int = len(LANDMARK_NAMES)
    crop_factor: float = CROP_FACTOR
    landmark_names: tuple[str, ...] = field(default=LANDMARK_NAMES)

    @classmethod
    def from_dict(cls, data: dict) -> "HeadPoseNetConfig":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("widths", "landmark_names"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


class _Block(nn.Module):
    """Basic residual block (two 3x3 convs), optional stride-2 with a 1x1 projection."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.skip(x))


class HeadPoseNet(nn.Module):
    """Compact ResNet: image (B x 3 x S x S in [-1, 1]) -> 6D rotation, landmarks (crop units), visibility logits."""

    def __init__(self, cfg: HeadPoseNetConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or HeadPoseNetConfig()
        w = self.cfg.widths
        self.stem = nn.Sequential(nn.Conv2d(3, w[0], 3, 2, 1, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU())
        stages = []
        for cin, cout in zip(w[:-1], w[1:]):
            stages += [_Block(cin, cout, 2)] + [_Block(cout, cout, 1) for _ in range(self.cfg.blocks_per_stage - 1)]
        self.stages = nn.Sequential(*stages)
        side = self.cfg.input_size // 2 ** len(w)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(w[-1] * side * side, self.cfg.hidden), nn.ReLU())
        self.rotation = nn.Linear(self.cfg.hidden, 6)
        self.landmarks = nn.Linear(self.cfg.hidden, 2 * self.cfg.num_landmarks)
        self.visibility = nn.Linear(self.cfg.hidden, self.cfg.num_landmarks)
        with torch.no_grad():  # start at the frontal pose and the crop centre
            self.rotation.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1.0, 0]))
            self.rotation.weight.mul_(0.1)
            self.landmarks.bias.fill_(0.5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B x 3 x 3 rotation, B x K x 2 landmarks in [0, 1] crop units, B x K visibility logits)."""
        h = self.fc(self.stages(self.stem(x)))
        return (rotation_from_6d(self.rotation(h)), self.landmarks(h).view(len(x), -1, 2), self.visibility(h))


def rotation_from_6d(six: torch.Tensor) -> torch.Tensor:
    """B x 6 (first two columns of R) -> B x 3 x 3 rotation by Gram-Schmidt (Zhou et al. 2019, 6DRepNet)."""
    a, b = six[:, :3], six[:, 3:]
    x = F.normalize(a, dim=1)
    y = F.normalize(b - (x * b).sum(1, keepdim=True) * x, dim=1)
    return torch.stack([x, y, torch.cross(x, y, dim=1)], dim=2)


def pose_crop(image: np.ndarray, box: np.ndarray, size: int = INPUT_SIZE,
              crop_factor: float = CROP_FACTOR) -> np.ndarray:
    """The square crop (size x size x 3 uint8 RGB) around a face box (x0, y0, x1, y1) the net is trained on."""
    matrix = crop_matrix(box, size, crop_factor)
    scale = matrix[0, 0]
    return cv2.warpAffine(np.ascontiguousarray(image), matrix, (size, size),
                          flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_matrix(box: np.ndarray, size: int = INPUT_SIZE, crop_factor: float = CROP_FACTOR) -> np.ndarray:
    """2 x 3 affine from image pixels to the pose crop's pixels (centre of the box -> centre of the crop)."""
    box = np.asarray(box, dtype=np.float64)
    if box.shape[0] < 4 or not np.isfinite(box[:4]).all() or box[2] <= box[0] or box[3] <= box[1]:
        raise Pose3DFRError(f"face box {box[:4].tolist()}: expected finite (x0, y0, x1, y1) with x1 > x0, y1 > y0")
    centre = (box[:2] + box[2:4]) / 2
    scale = size / (crop_factor * max(box[2] - box[0], box[3] - box[1]))
    c = (size - 1) / 2  # pixel-centre coordinates: the crop's centre pixel
    return np.array([[scale, 0, c - scale * centre[0]], [0, scale, c - scale * centre[1]]])


def crop_units(points: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Crop pixels -> [0, 1] crop units with (x + 0.5) / size, so that mirroring the crop is u -> 1 - u."""
    return (np.asarray(points, dtype=np.float64) + 0.5) / size


def to_tensor(crops: np.ndarray) -> torch.Tensor:
    """N x S x S x 3 uint8 -> N x 3 x S x S float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
