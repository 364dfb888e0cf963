"""Training loop: seeded, resumable, single process or DDP (`torchrun ... -m pose3dfr.cli train`).

Reproducibility: every random draw comes from a seeded source that a checkpoint restores: the shuffle
(DistributedSampler, seed + epoch), each sample's augmentation (a generator seeded by (seed, epoch,
index), so worker count and restarts do not matter), DataLoader worker seeds (a per-epoch generator) and
the model's own draws (global torch RNG, saved). A run resumed from step k therefore ends with the same
weights as an uninterrupted run. Only rank 0 writes files (logs, checkpoints, final model).

Around the loop: engine.distributed (process group, device), engine.batches (what each rank reads),
engine.checkpoint (the run folder's files) and engine.logger (metrics.jsonl, TensorBoard, progress bar). The
model returns embeddings, logits and attention; the loss over them is pose3dfr.losses.Pose3DFRLoss.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from pose3dfr.data.transforms import ModelTransform
from pose3dfr.engine.batches import SeededSamples, open_dataset, training_batches
from pose3dfr.engine.checkpoint import (FINAL_STEM, atomic_save_model, latest_checkpoint, load_backbone, resume_from,
                                        save_checkpoint, state_dict_digest)
from pose3dfr.engine.config import TrainConfig
from pose3dfr.engine.diagnostics import attention_gradients, attention_state
from pose3dfr.engine.distributed import broadcast_buffers, check_same_start, init_distributed, resolve_device
from pose3dfr.engine.logger import RunLogger, flat_validation, progress_bar
from pose3dfr.engine.point_cache import FrozenPointFeatures
from pose3dfr.errors import CheckpointError, DatasetError, Pose3DFRError
from pose3dfr.losses import Pose3DFRLoss
from pose3dfr.eval.evaluate import default_image_transform, evaluate_model, pipeline_detections
from pose3dfr.models import ModelConfig, create_model, model_config
from pose3dfr.models.io import read_meta


# ----------------------------------------------------------------------------------------------
# Model, optimiser, schedule
# ----------------------------------------------------------------------------------------------

def create_model_config(config: TrainConfig) -> ModelConfig:
    """The ModelConfig the run will build (before the data fixes num_classes)."""
    return model_config(config.model, **config.model_overrides)


def build_model(config: TrainConfig, num_classes: int) -> torch.nn.Module:
    """The Pose3DFR model of `config.model` (+ overrides), with pretrained 2D weights when configured."""
    overrides = {**config.model_overrides, "num_classes": num_classes}
    pretrained = config.pretrained
    own_checkpoint = False
    if pretrained:
        try:
            read_meta(pretrained)
            own_checkpoint = True  # a pose3dfr checkpoint: take its backbone.* tensors below
        except CheckpointError:
            overrides["backbone_weights"] = str(pretrained)  # AdaFace .ckpt / backbone file: the model loads it
    model = create_model(config.model, **overrides)
    if own_checkpoint:
        load_backbone(model, pretrained)
    for parameter in frozen_parameters(model, config):
        parameter.requires_grad_(False)
    return model


@torch.no_grad()
def imprint_head(model: torch.nn.Module, dataset: Any, per_identity: int, seed: int, device: torch.device,
                 align: str = "oracle", detections: Any = None) -> None:
    """Set each 2D class centre to the normalised mean embedding of up to `per_identity` of its views, cropped
    as training crops them (`align`, with the data root's `detections` for "pipeline").

    `dataset` must list the training identities in the same label order (an image-only view of the split)."""
    transform = default_image_transform(model, seed, align=align, detections=detections)
    rng = np.random.default_rng(seed)
    by_identity: dict[int, list[int]] = {}
    for index, record in enumerate(dataset.records):
        by_identity.setdefault(record.identity, []).append(index)
    was_training = model.training
    model.eval()
    kernel = model.margin_2d.kernel  # D x classes
    for label, indices in by_identity.items():
        chosen = rng.choice(indices, size=min(per_identity, len(indices)), replace=False)
        images = torch.stack([transform(dataset[int(i)]) for i in chosen]).to(device)
        kernel[:, label] = F.normalize(model.embed_trained(images).embeddings.mean(0), dim=0)
    model.train(was_training)


def frozen_parameters(model: torch.nn.Module, config: TrainConfig) -> list[torch.nn.Parameter]:
    """The parameters training leaves untouched under config.freeze."""
    if config.freeze == "none":
        return []
    head = {id(p) for m in _learning_backbone_modules(model, config) for p in m.parameters()}
    return [p for p in model.backbone.parameters() if id(p) not in head]


def _learning_backbone_modules(model: torch.nn.Module, config: TrainConfig) -> list[torch.nn.Module]:
    """The backbone modules that learn under freeze="trunk": the head and the trunk's trainable last levels."""
    if config.freeze != "trunk":
        return []
    return [*model.backbone.trunk_tail_modules(config.trainable_trunk_levels), *model.backbone.head_modules()]


def set_train_mode(model: torch.nn.Module, config: TrainConfig) -> None:
    """model.train(), keeping frozen backbone parts in eval mode (their BN statistics stay fixed too), and the
    whole backbone with config.backbone_eval (pretrained BN statistics, no dropout)."""
    model.train()
    if config.freeze != "none" or config.backbone_eval:
        model.backbone.eval()
    if config.backbone_eval:
        return
    for module in _learning_backbone_modules(model, config):
        module.train()


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Parameter groups: backbone (lr x backbone_lr_mult when starting from pretrained weights), attention
    (lr x attention_lr_mult) and the rest."""
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    attention_ids = {id(p) for p in model.attention.parameters()} if model.attention is not None else set()
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    attention = [p for p in model.parameters() if p.requires_grad and id(p) in attention_ids]
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in backbone_ids | attention_ids]
    mult = config.backbone_lr_mult if config.pretrained else 1.0
    groups = [g for g in ({"params": backbone, "lr": config.lr * mult, "name": "backbone"},
                          {"params": attention, "lr": config.lr * config.attention_lr_mult, "name": "attention"},
                          {"params": rest, "lr": config.lr, "name": "rest"}) if g["params"]]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of the base learning rate at `step`: linear warmup, then cosine / step / constant."""
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "step":
        return config.lr_gamma ** sum(step >= m * config.steps for m in config.lr_milestones)
    span = max(1, config.steps - config.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - config.warmup_steps) / span)))


def seed_everything(seed: int, deterministic: bool, device: torch.device) -> None:
    """Seed Python, NumPy and torch. CPU kernels are already deterministic for a fixed thread count; on
    GPU `deterministic` also selects deterministic kernels (slower; cuDNN autotuning off)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------

def train(config: TrainConfig, data: str | Path, out: str | Path, resume: bool = False,
          stop_at_step: int | None = None) -> dict[str, Any]:
    """Train on `data` (FaceScape layout, splits from its manifest) into `out`; returns a summary.

    stop_at_step ends the run early after that step's checkpoint, as if killed (for resume tests and
    time-limited cluster jobs); the schedule still spans config.steps.
    """
    config.validate()
    out = Path(out)
    info = init_distributed(config.device)
    device = resolve_device(config.device, info.local_rank)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed, config.deterministic, device)

    # Data and model (the order of these steps fixes the RNG draws: keep it).
    probe = create_model_config(config)
    cloud_points = int(config.cloud_points_factor * probe.num_points) if probe.use_3d else 0
    train_set = open_dataset(data, config.train_split, cloud_points,  # registration needs normals (visibility)
                             max(probe.point_features, 6) if probe.registers_views else probe.point_features)
    model = build_model(config, train_set.num_identities).to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    teacher = pretrained_teacher(model, config)
    objective = Pose3DFRLoss(model.cfg, config.distill_weight)
    detections = None
    if config.align == "pipeline":  # the Verifier's crops: detections of every training image, cached per root
        detections = pipeline_detections(train_set, range(len(train_set.records)))
    samples = SeededSamples(train_set, _training_transform(model, config, detections), config.seed)
    global_batch = config.batch_size * info.world_size
    steps_per_epoch = (len(train_set) // info.world_size) // config.batch_size  # DistributedSampler, drop_last
    if steps_per_epoch < 1:
        raise DatasetError(f"{data}: {len(train_set)} training images, fewer than one global batch "
                           f"({config.batch_size} x {info.world_size} processes)")

    # Where to start: a checkpoint's state, or fresh (with an imprinted head over pretrained weights).
    optimizer = build_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))
    start = 0
    stem = latest_checkpoint(out) if resume else None
    if stem is not None:
        start = resume_from(stem, model, optimizer, scheduler)
    elif config.pretrained and config.imprint_head:  # a resumed run has its head in the checkpoint
        imprint_head(model, open_dataset(data, config.train_split, 0, 3), config.imprint_images_per_identity,
                     config.seed, device, config.align, detections)
    if info.enabled:
        check_same_start(start, out)
    if info.is_main:
        print(f"{'resuming from ' + str(stem) if stem else 'starting'} at step {start}/{config.steps}: "
              f"{len(train_set)} images, {train_set.num_identities} identities, {steps_per_epoch} steps/epoch, "
              f"{info.world_size} process(es) on {device}")
        (out / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2))
    net = model
    if info.enabled:
        net = _ddp(model, device, config)

    # Steps: train, log, validate, checkpoint.
    val_set = _validation_set(data, config) if info.is_main else None
    val_interval = config.val_interval or steps_per_epoch
    logger = RunLogger(out, info.is_main, config.tensorboard)
    last_validation: dict[str, Any] | None = None
    end = min(config.steps, stop_at_step) if stop_at_step is not None else config.steps
    progress = progress_bar(config.steps, start, info.is_main)
    if val_set is not None and config.val_at_start and start == 0:
        _validate(model, val_set, config, 0, logger)  # the starting model's TAR: what training must improve on
    point_cache = FrozenPointFeatures() if model.cfg.use_3d and config.freeze_3d_after else None
    set_train_mode(model, config)
    batches = training_batches(samples, config, info, start, steps_per_epoch)
    diagnostics: dict[str, float] = {}
    try:
        for step in range(start + 1, end + 1):
            tick = time.perf_counter()
            if point_cache is not None and step == max(config.freeze_3d_after, start) + 1:
                point_cache.freeze(model)
                if info.enabled:  # DDP must see which parameters still learn
                    net = _ddp(model, device, config)
            cache = point_cache if point_cache is not None and step > config.freeze_3d_after else None
            diagnose = (step % config.log_interval == 0 or step == end) and not info.enabled
            losses = _train_step(net, model, objective, next(batches), optimizer, scheduler, config, device,
                                 teacher, cache, diagnose)
            diagnostics.update({k: v for k, v in losses.items() if k not in ("lr",)})
            rate = global_batch / max(time.perf_counter() - tick, 1e-9)
            row = {"step": step, "epoch": (step - 1) // steps_per_epoch, "samples_per_s": rate, **losses}
            progress.update(1)
            progress.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k.startswith("loss")} | {"samples/s": f"{rate:.1f}"})
            if step % config.log_interval == 0 or step == end:
                logger.log(row)
            if val_set is not None and (step % val_interval == 0 or step == config.steps):
                last_validation = _validate(model, val_set, config, step, logger)
                set_train_mode(model, config)
                if point_cache is not None and step > config.freeze_3d_after:
                    model.point_encoder.eval()
            if info.is_main and (step % config.checkpoint_interval == 0 or step == end):
                save_checkpoint(out, model, optimizer, scheduler, step,
                                _extra(config, step, last_validation, diagnostics), config.keep_checkpoints)

        # The end: ranks agree on buffers, rank 0 writes the final model (validated) when the schedule is done.
        if info.enabled:
            broadcast_buffers(model)
        summary = {"step": end, "finished": end == config.steps, "out": str(out)}
        if end == config.steps and info.is_main:
            if last_validation is None and val_set is not None:
                last_validation = _validate(model, val_set, config, end, logger)
            atomic_save_model(model, out / FINAL_STEM, _extra(config, end, last_validation, diagnostics))
            summary["model"] = str(out / f"{FINAL_STEM}.safetensors")
        if config.write_rank_hashes:
            (out / "ranks").mkdir(parents=True, exist_ok=True)
            (out / "ranks" / f"rank{info.rank}.sha256").write_text(state_dict_digest(model))
        if info.enabled:
            dist.barrier()
        summary["validation"] = last_validation
        return summary
    finally:
        progress.close()
        logger.close()


def _ddp(model: torch.nn.Module, device: torch.device, config: TrainConfig) -> torch.nn.Module:
    """The DDP wrapper of `model` (built again when the set of learning parameters changes)."""
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=config.ddp_find_unused_parameters)


def _training_transform(model: torch.nn.Module, config: TrainConfig, detections: Any) -> ModelTransform:
    """The augmenting transform of this model's input (aligned chip, points when the model uses 3D)."""
    cfg = model.cfg
    grid = model.backbone.feature_size if cfg.registers_views else None
    return ModelTransform(model.backbone.template, model.backbone.input_size, cfg.num_points,
                          cfg.point_features, train=True, seed=config.seed,
                          require_points=cfg.use_3d, align=config.align, detections=detections, grid=grid,
                          fixed_points=cfg.use_3d and config.freeze_3d_after > 0, alignment=cfg.alignment)


def pretrained_teacher(model: torch.nn.Module, config: TrainConfig) -> torch.nn.Module | None:
    """A frozen copy of the freshly loaded pretrained backbone when distilling (config.distill_weight > 0)."""
    if config.distill_weight <= 0:
        return None
    teacher = copy.deepcopy(model.backbone).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


def _distill_target(teacher: torch.nn.Module | None, images: torch.Tensor, batch: dict[str, Any],
                    result: dict[str, Any], config: TrainConfig) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(B bools: this batch's near-frontal views, n x D: the pretrained network's embeddings of them) that the
    distillation term compares with; (None, None) without a teacher."""
    if teacher is None:
        return None, None
    yaw = torch.as_tensor(batch["yaw"], dtype=torch.float32, device=images.device)
    near_frontal = yaw.abs() <= config.distill_max_yaw  # NaN yaw (unknown) is never distilled
    with torch.no_grad():
        if config.freeze == "trunk" and config.trainable_trunk_levels == 0:  # the trunk is the teacher's: reuse its map
            target = teacher.head(result["fmap_2d"][near_frontal])
        else:
            target = teacher(images[near_frontal])[1]
    return near_frontal, target


def _train_step(net: torch.nn.Module, model: torch.nn.Module, objective: Pose3DFRLoss, batch: dict[str, Any],
                optimizer: torch.optim.Optimizer, scheduler: Any, config: TrainConfig,
                device: torch.device, teacher: torch.nn.Module | None = None,
                point_cache: FrozenPointFeatures | None = None, diagnose: bool = False) -> dict[str, float]:
    """One optimiser step on `batch` (through `net`, the DDP wrapper or the model) with the loss `objective`;
    its lr, losses and, when `diagnose`, the attention diagnostics (engine.diagnostics). `point_cache`: the
    frozen 3D branch's features."""
    images = batch["image"].to(device, non_blocking=True)
    points = batch["points"].to(device, non_blocking=True) if batch["points"] is not None else None
    labels = batch["label"].to(device, non_blocking=True)
    cells = batch["cells"].to(device, non_blocking=True) if batch.get("cells") is not None else None
    lr = optimizer.param_groups[-1]["lr"]  # the rate this step uses (the non-backbone group)
    use_3d = model.cfg.use_3d
    cached = None
    if point_cache is not None and points is not None:
        cached = point_cache.lookup(model, points, batch["cloud_key"])
        if cells is None:  # no cameras: the frontal cells, as the point encoder would pool
            cells = model.point_encoder.cells(points[..., :3])
    result = net(images, points if use_3d else None, labels, cells if use_3d else None, cached)
    result.update(objective(result, labels, *_distill_target(teacher, images, batch, result, config)))
    loss = result["loss"]
    if not torch.isfinite(loss):
        raise Pose3DFRError(f"training diverged: loss is {loss.item()} (lower lr or check the data)")
    extra = {**attention_state(model, result), **attention_gradients(model, result)} if diagnose else {}
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip:
        for name, group in clip_groups(model, config).items():
            norm = torch.nn.utils.clip_grad_norm_(group, config.grad_clip)
            if diagnose:
                extra[f"grad_norm_{name}"] = float(norm)  # before clipping
    optimizer.step()
    scheduler.step()
    losses = {k: float(result[k].detach()) for k in ("loss", "loss_2d", "loss_3d", "loss_je", "loss_distill") if result.get(k) is not None}
    return {"lr": lr, **losses, **extra}


def clip_groups(model: torch.nn.Module, config: TrainConfig) -> dict[str, list[torch.nn.Parameter]]:
    """The parameter sets whose gradient norms are clipped, each to config.grad_clip: {"all": ...}, or the
    3D branch ({"3d"}: point encoder, 3D head and margin) and the rest ({"2d"})."""
    learning = [p for p in model.parameters() if p.requires_grad]
    if config.grad_clip_mode == "global":
        return {"all": learning}
    branch_3d = {id(p) for m in (model.point_encoder, model.head_3d, model.margin_3d) if m is not None
                 for p in m.parameters()}
    groups = {"3d": [p for p in learning if id(p) in branch_3d], "2d": [p for p in learning if id(p) not in branch_3d]}
    return {name: group for name, group in groups.items() if group}


def _validation_set(data: str | Path, config: TrainConfig):
    """The per-pose validation images (no points needed), or None when off or the data has no such split."""
    if not config.val_split:
        return None
    try:
        return open_dataset(data, config.val_split, 0, 3)
    except DatasetError as exc:
        print(f"no per-pose validation: {exc}")
        return None


def _validate(model: torch.nn.Module, val_set: Any, config: TrainConfig, step: int,
              logger: RunLogger) -> dict[str, Any] | None:
    """Per-pose TAR of the model on the validation split, logged; None when the split cannot be evaluated."""
    try:
        oracle = config.eval.align == "oracle"  # pipeline: evaluate_model crops from the cached detections
        results = evaluate_model(model, val_set, config.eval, default_image_transform(model, config.seed) if oracle else None)
    except DatasetError as exc:  # e.g. no frontal view in the validation split
        print(f"validation skipped at step {step}: {exc}")
        return None
    if results["overall"]["impostor_pairs"] == 0:
        print(f"validation at step {step}: split {config.val_split!r} has {results['protocol']['identities']} "
              "identity, so no impostor pairs: no TAR and no calibration thresholds")
    logger.log({"step": step, **flat_validation(results, config.eval.fars)})
    return results


def _extra(config: TrainConfig, step: int, validation: dict[str, Any] | None,
           diagnostics: dict[str, float] | None = None) -> dict[str, Any]:
    """The `extra` block of a checkpoint's JSON: the config, the step, the latest validation/calibration and
    the last logged losses and attention diagnostics."""
    extra: dict[str, Any] = {"train_config": config.to_dict(), "step": step}
    if diagnostics:
        extra["diagnostics"] = dict(diagnostics)
    if validation is not None:
        extra["calibration"] = validation["calibration"]
        extra["validation"] = {"split": config.eval.split, "overall": validation["overall"],
                               "bins": validation["bins"]}
    return extra
