"""Training of the head-pose net (model.py) on rendered crops (data.py).

Loss: geodesic angle between predicted and true rotation (6DRepNet) + smooth-L1 on landmark positions
(all landmarks, hidden ones down-weighted: their projected position is still defined) + BCE on visibility.
Each batch is mirrored with probability 1/2 per sample (yaw and roll negated, left/right landmarks swapped).
Writes <out>/headpose.safetensors + .json (config, data and training settings, held-out errors) and
<out>/metrics.jsonl.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pose3dfr.geometry import euler_angles, rotation_matrix
from pose3dfr.headpose.data import (DetectorFactory, HeadPoseDataConfig, generate, load_cache, mean_box_count,
                                    save_cache)
from pose3dfr.headpose.model import MIRROR, MIRROR_PERMUTATION, HeadPoseNet, HeadPoseNetConfig, to_tensor
from pose3dfr.models.io import save_model


@dataclass
class HeadPoseTrainConfig:
    """Schedule and loss of the head-pose net; the defaults are the shipped model's CPU recipe."""

    data: HeadPoseDataConfig = field(default_factory=HeadPoseDataConfig)
    net: HeadPoseNetConfig = field(default_factory=HeadPoseNetConfig)
    steps: int = 3000
    # 0: run all steps; else the cosine schedule follows elapsed time and training stops at the budget (shared CPUs)
    time_budget_min: float = 0.0
    batch_size: int = 128
    lr: float = 2e-3  # AdamW with cosine decay; a small net from scratch tolerates a high rate
    weight_decay: float = 1e-4
    warmup_steps: int = 100  # linear warm-up: BatchNorm statistics settle before large steps
    landmark_weight: float = 2.0  # smooth-L1 in crop units (1 px = 1/64) next to the geodesic loss in radians
    hidden_landmark_weight: float = 0.3  # a hidden landmark's position is defined but not seen
    visibility_weight: float = 0.1
    mirror_p: float = 0.5  # share of each batch mirrored
    val_identities: int = 10  # the last identities of the data are held out for the log
    val_every: int = 500
    seed: int = 0
    device: str = "cpu"
    threads: int = 2  # torch CPU threads (the machine is shared)
    cache: str = ""  # .npz of rendered crops; generated (and written there) when missing


def train_headpose(cfg: HeadPoseTrainConfig, out_dir: str | Path, make_detector: DetectorFactory,
                   progress: bool = True, command: str = "") -> Path:
    """Train and write <out>/headpose.safetensors + .json (`command`, the one that ran this, is recorded);
    returns the .safetensors path. `make_detector` boxes the crops when they are rendered (not for a cache)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    if cfg.device == "cpu":
        torch.set_num_threads(cfg.threads)
    data = _load_or_generate(cfg, out, make_detector, progress)
    ids = data["identity"]
    held = ids > ids.max() - cfg.val_identities
    train = {k: v[~held] for k, v in data.items()}
    val = {k: v[held] for k, v in data.items()}
    device = torch.device(cfg.device)
    images = to_tensor(train["images"]).to(device)
    rotations = torch.from_numpy(_rotations(train["euler"])).float().to(device)
    marks = torch.from_numpy(train["landmarks"]).float().to(device)
    model = HeadPoseNet(cfg.net).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start = time.time()

    def progress_fraction(step: int) -> float:
        used = (time.time() - start) / (60 * cfg.time_budget_min) if cfg.time_budget_min > 0 else 0.0
        return min(1.0, max(step / cfg.steps, used))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.warmup_steps)
                                              * 0.5 * (1 + math.cos(math.pi * progress_fraction(s))))
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    log = (out / "metrics.jsonl").open("w")
    step = 0
    while step < cfg.steps and progress_fraction(step) < 1.0:
        step += 1
        idx = torch.randint(len(images), (cfg.batch_size,), generator=gen).to(device)
        flip = (torch.rand(cfg.batch_size, generator=gen) < cfg.mirror_p).to(device)
        x, r, lm = _mirror_batch(images[idx], rotations[idx], marks[idx], flip)
        model.train()
        loss, parts = _loss(model(x), r, lm, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            record = {"step": step, "seconds": round(time.time() - start, 1), "loss": round(loss.item(), 4), **parts}
            if step % cfg.val_every == 0:
                record["val"] = evaluate_crops(model, val)
            log.write(json.dumps(record) + "\n")
            log.flush()
            if progress:
                print(json.dumps(record), flush=True)
    final = {"step": step, "seconds": round(time.time() - start, 1), "val": evaluate_crops(model, val)}
    log.write(json.dumps(final) + "\n")
    log.close()
    model.eval().cpu()
    extra = {"command": command, "train": asdict(cfg), "val": final["val"], "train_seconds": final["seconds"],
             "steps_done": step, "train_crops": int(len(images)), "yunet_box_share": mean_box_count(data)}
    return save_model(model, out / "headpose", extra)


def _load_or_generate(cfg: HeadPoseTrainConfig, out: Path, make_detector: DetectorFactory,
                      progress: bool) -> dict[str, np.ndarray]:
    cache = Path(cfg.cache) if cfg.cache else out / "data.npz"
    if cache.is_file():
        return load_cache(cache)
    data = generate(cfg.data, make_detector, progress)
    save_cache(data, cache)
    return data


def _rotations(euler: np.ndarray) -> np.ndarray:
    return np.stack([rotation_matrix(*angles) for angles in euler.astype(np.float64)])


def _mirror_batch(x: torch.Tensor, r: torch.Tensor, lm: torch.Tensor, flip: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch with the `flip` samples mirrored: image flipped, R -> M R M, landmarks swapped and x -> 1 - x."""
    x, r, lm = x.clone(), r.clone(), lm.clone()
    if flip.any():
        m = MIRROR.to(r.device)
        x[flip] = x[flip].flip(3)
        r[flip] = m @ r[flip] @ m
        swapped = lm[flip][:, list(MIRROR_PERMUTATION)]
        swapped[..., 0] = 1.0 - swapped[..., 0]
        lm[flip] = swapped
    return x, r, lm


def geodesic(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """B angles (radians) between rotations."""
    cos = ((pred.transpose(1, 2) @ target).diagonal(dim1=1, dim2=2).sum(1) - 1) / 2
    return torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))


def _loss(outputs, r: torch.Tensor, lm: torch.Tensor, cfg: HeadPoseTrainConfig) -> tuple[torch.Tensor, dict]:
    rot, pos, logit = outputs
    angle = geodesic(rot, r).mean()
    seen = (lm[..., 2] > 0.5).float()
    weight = seen + cfg.hidden_landmark_weight * (1 - seen)
    position = (F.smooth_l1_loss(pos, lm[..., :2], reduction="none", beta=0.02).sum(-1) * weight).mean()
    visibility = F.binary_cross_entropy_with_logits(logit, lm[..., 2])
    loss = angle + cfg.landmark_weight * position + cfg.visibility_weight * visibility
    return loss, {"geodesic_deg": round(math.degrees(angle.item()), 2), "landmark": round(position.item(), 5),
                  "visibility": round(visibility.item(), 4)}


@torch.inference_mode()
def evaluate_crops(model: HeadPoseNet, data: dict[str, np.ndarray], batch: int = 256) -> dict[str, float]:
    """Yaw / pitch / roll MAE (deg) and landmark error (crop px, visible ones) on crops, without mirror averaging."""
    if len(data["images"]) == 0:
        return {}
    model.eval()
    device = next(model.parameters()).device
    preds, points = [], []
    for i in range(0, len(data["images"]), batch):
        rot, pos, _ = model(to_tensor(data["images"][i:i + batch]).to(device))
        preds += [euler_angles(m) for m in rot.double().cpu().numpy()]
        points.append(pos.cpu().numpy())
    err = np.abs(np.asarray(preds) - data["euler"])
    lm = data["landmarks"]
    dist = np.linalg.norm(np.concatenate(points) - lm[..., :2], axis=-1) * model.cfg.input_size
    return {"yaw_mae": round(float(err[:, 0].mean()), 2), "pitch_mae": round(float(err[:, 1].mean()), 2),
            "roll_mae": round(float(err[:, 2].mean()), 2),
            "landmark_px": round(float(dist[lm[..., 2] > 0.5].mean()), 2)}
