"""Training loop: seeded, resumable, single process or DDP (`torchrun ... -m pose3dfr.cli train`).

Reproducibility: every random draw comes from a seeded source that a checkpoint restores: the shuffle
(DistributedSampler, seed + epoch), each sample's augmentation (a generator seeded by (seed, epoch,
index), so worker count and restarts do not matter), DataLoader worker seeds (a per-epoch generator) and
the model's own draws (global torch RNG, saved). A run resumed from step k therefore ends with the same
weights as an uninterrupted run. Only rank 0 writes files (logs, checkpoints, final model).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import save_file
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from pose3dfr.engine.config import TrainConfig
from pose3dfr.eval.evaluate import evaluate_model, resolve_device
from pose3dfr.eval.metrics import far_key
from pose3dfr.errors import CheckpointError, DatasetError, Pose3DFRError

CHECKPOINT_DIR = "checkpoints"
FINAL_STEM = "model"
METRICS_FILE = "metrics.jsonl"
_STEP_RE = re.compile(r"^step_(\d+)\.json$")


# ----------------------------------------------------------------------------------------------
# Distributed setup
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> DistInfo:
    """Join the process group torchrun describes (WORLD_SIZE > 1): nccl on GPU, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local_rank)


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------

class SeededSamples(Dataset):
    """Dataset items addressed by (epoch, index): the transform's augmentation generator is reseeded from
    (seed, epoch, index) before each sample, so augmentation is the same in any worker and after a resume."""

    def __init__(self, dataset: Any, transform: Any, seed: int) -> None:
        self.dataset, self.transform, self.seed = dataset, transform, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        return self.transform(self.dataset[index], rng=np.random.default_rng([self.seed, epoch, index]))


class EpochBatches(Sampler):
    """One epoch of this rank's batches of (epoch, index) keys from a DistributedSampler, skipping the
    first `skip` batches (those a resumed run has already trained on)."""

    def __init__(self, sampler: DistributedSampler, batch_size: int, epoch: int, skip: int = 0) -> None:
        self.sampler, self.batch_size, self.epoch, self.skip = sampler, batch_size, epoch, skip

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size - self.skip

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        self.sampler.set_epoch(self.epoch)
        indices = list(self.sampler)
        for b in range(self.skip, len(indices) // self.batch_size):
            yield [(self.epoch, i) for i in indices[b * self.batch_size:(b + 1) * self.batch_size]]


def _batches(train_set: Dataset, config: TrainConfig, info: DistInfo, start_step: int,
             steps_per_epoch: int) -> Iterator[dict[str, Any]]:
    """Endless stream of collated training batches from `start_step` on."""
    from pose3dfr.data.transforms import collate

    sampler = DistributedSampler(train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=config.seed, drop_last=True)
    epoch, skip = divmod(start_step, steps_per_epoch)
    while True:
        generator = torch.Generator().manual_seed(config.seed * 100003 + epoch)  # worker seeds only
        loader = DataLoader(train_set, batch_sampler=EpochBatches(sampler, config.batch_size, epoch, skip),
                            num_workers=config.num_workers, collate_fn=collate, generator=generator,
                            persistent_workers=False)
        yield from loader
        epoch, skip = epoch + 1, 0


def _open_dataset(data: str | Path, split: str, num_points: int, point_features: int):
    from pose3dfr.data.facescape import FaceScapeMultiView

    return FaceScapeMultiView(data, split=split, num_points=num_points, point_features=point_features)


# ----------------------------------------------------------------------------------------------
# Model, optimiser, schedule
# ----------------------------------------------------------------------------------------------

def build_model(config: TrainConfig, num_classes: int) -> torch.nn.Module:
    """The Pose3DFR model of `config.model` (+ overrides), with pretrained 2D weights when configured."""
    from pose3dfr.models import create_model
    from pose3dfr.models.io import read_meta

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
        _load_backbone_from_checkpoint(model, pretrained)
    for parameter in frozen_parameters(model, config):
        parameter.requires_grad_(False)
    return model


@torch.no_grad()
def imprint_head(model: torch.nn.Module, dataset: Any, per_identity: int, seed: int, device: torch.device,
                 align: str = "oracle", detections: Any = None) -> None:
    """Set each 2D class centre to the normalised mean embedding of up to `per_identity` of its views, cropped
    as training crops them (`align`, with the data root's `detections` for "pipeline").

    `dataset` must list the training identities in the same label order (an image-only view of the split)."""
    from pose3dfr.eval.evaluate import default_image_transform

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
        kernel[:, label] = F.normalize(model.embed(images).embeddings.mean(0), dim=0)
    model.train(was_training)


def frozen_parameters(model: torch.nn.Module, config: TrainConfig) -> list[torch.nn.Parameter]:
    """The parameters training leaves untouched under config.freeze."""
    if config.freeze == "none":
        return []
    head = {id(p) for m in model.backbone.head_modules() for p in m.parameters()} if config.freeze == "trunk" else set()
    return [p for p in model.backbone.parameters() if id(p) not in head]


def _load_backbone_from_checkpoint(model: torch.nn.Module, path: str | Path) -> None:
    from safetensors.torch import load_file

    from pose3dfr.models.io import checkpoint_paths

    weights, _ = checkpoint_paths(path)
    state = {k[len("backbone."):]: v for k, v in load_file(str(weights)).items() if k.startswith("backbone.")}
    try:
        model.backbone.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights}: backbone does not match {model.cfg.backbone!r}: {str(exc)[:300]}") from None


def set_train_mode(model: torch.nn.Module, config: TrainConfig) -> None:
    """model.train(), keeping frozen backbone parts in eval mode (their BN statistics stay fixed too)."""
    model.train()
    if config.freeze != "none":
        model.backbone.eval()
    if config.freeze == "trunk":
        for module in model.backbone.head_modules():
            module.train()


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Two parameter groups: backbone (lr x backbone_lr_mult when starting from pretrained weights) and the rest."""
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in backbone_ids]
    mult = config.backbone_lr_mult if config.pretrained else 1.0
    groups = [g for g in ({"params": backbone, "lr": config.lr * mult, "name": "backbone"},
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


# ----------------------------------------------------------------------------------------------
# Checkpoints (safetensors + JSON; nothing pickled)
# ----------------------------------------------------------------------------------------------

def _rng_tensors() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy.keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, gauss = random.getstate()
    tensors["rng.python"] = torch.tensor(internal, dtype=torch.int64)
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": [version, gauss]}
    return tensors, meta


def _restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy.keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, gauss = meta["python"]
    random.setstate((version, tuple(int(x) for x in tensors["rng.python"].tolist()), gauss))


def _training_state(optimizer: torch.optim.Optimizer, scheduler: Any, step: int
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimiser/scheduler/RNG state as flat tensors + JSON-able metadata."""
    tensors: dict[str, torch.Tensor] = {}
    optim = optimizer.state_dict()
    plain_state: dict[str, dict[str, Any]] = {}
    for index, entry in optim["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain_state.setdefault(str(index), {})[name] = value
    rng, rng_meta = _rng_tensors()
    tensors.update(rng)
    meta = {"step": step, "param_groups": optim["param_groups"], "plain_state": plain_state,
            "scheduler": scheduler.state_dict(), "rng": rng_meta}
    return tensors, meta


def _restore_training_state(path: Path, optimizer: torch.optim.Optimizer, scheduler: Any) -> int:
    """Load a .train.safetensors file into optimiser, scheduler and RNGs; returns its step."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads(fh.metadata()["state"])
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # safetensors raises its own types for truncated / foreign files
        raise CheckpointError(f"{path}: unreadable training state ({exc})") from None
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, entry in meta["plain_state"].items():
        state.setdefault(int(index), {}).update(entry)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: optimiser state does not fit this model/config ({exc})") from None
    scheduler.load_state_dict(meta["scheduler"])
    _restore_rng(tensors, meta["rng"])
    return int(meta["step"])


def _atomic_save_model(model: torch.nn.Module, stem: Path, extra: dict[str, Any]) -> None:
    """save_model into a temporary folder beside `stem`, then os.replace weights, then the JSON."""
    from pose3dfr.models import save_model

    stem.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=stem.parent, prefix=".tmp_") as tmp:
        save_model(model, Path(tmp) / stem.name, extra=extra)
        os.replace(Path(tmp) / f"{stem.name}.safetensors", stem.with_name(stem.name + ".safetensors"))
        os.replace(Path(tmp) / f"{stem.name}.json", stem.with_name(stem.name + ".json"))


def save_checkpoint(out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                    step: int, extra: dict[str, Any], keep: int) -> Path:
    """checkpoints/step_<N>.train.safetensors, then .safetensors, then .json (the JSON marks it complete)."""
    folder = out / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"step_{step:08d}"
    tensors, meta = _training_state(optimizer, scheduler, step)
    tmp = folder / f".tmp_{stem.name}.train.safetensors"
    save_file(tensors, str(tmp), metadata={"state": json.dumps(meta)})
    os.replace(tmp, stem.with_name(stem.name + ".train.safetensors"))
    _atomic_save_model(model, stem, extra)
    for old in sorted(_complete_checkpoints(out))[:-keep]:
        for suffix in (".json", ".safetensors", ".train.safetensors"):
            old[1].with_name(old[1].name + suffix).unlink(missing_ok=True)
    return stem


def _complete_checkpoints(out: Path) -> list[tuple[int, Path]]:
    folder = out / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _STEP_RE.match(path.name)
        stem = path.with_suffix("")
        if match and all(stem.with_name(stem.name + s).is_file() for s in (".safetensors", ".train.safetensors")):
            found.append((int(match.group(1)), stem))
    return sorted(found)


def latest_checkpoint(out: str | Path) -> Path | None:
    """Stem of the newest complete step checkpoint under out/checkpoints, or None."""
    found = _complete_checkpoints(Path(out))
    return found[-1][1] if found else None


def _resume(stem: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> int:
    from safetensors.torch import load_file

    from pose3dfr.models.io import verified_weights

    weights, _ = verified_weights(stem)
    try:
        model.load_state_dict(load_file(str(weights)), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights}: does not fit the configured model: {str(exc)[:300]}") from None
    return _restore_training_state(stem.with_name(stem.name + ".train.safetensors"), optimizer, scheduler)


# ----------------------------------------------------------------------------------------------
# Logging
# ----------------------------------------------------------------------------------------------

class RunLogger:
    """JSONL rows (always) and TensorBoard scalars (when installed); inactive on ranks other than 0."""

    def __init__(self, out: Path, active: bool, tensorboard: bool) -> None:
        self.active = active
        self.file = open(out / METRICS_FILE, "a", encoding="utf-8") if active else None
        self.tb = None
        if active and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except ImportError:  # tensorboard not installed: JSONL only
                self.tb = None

    def log(self, row: dict[str, Any]) -> None:
        if not self.active:
            return
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        if self.tb is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "step" and value is not None:
                    self.tb.add_scalar(key, value, row["step"])

    def close(self) -> None:
        if self.file:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


def _flat_validation(results: dict[str, Any], fars: tuple[float, ...]) -> dict[str, Any]:
    row = {}
    for label, metrics in [("overall", results["overall"]), *results["bins"].items()]:
        for far in fars:
            row[f"val/{label}/tar_at_far_{far_key(far)}"] = metrics[f"tar_at_far_{far_key(far)}"]
    return row


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------

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


def train(config: TrainConfig, data: str | Path, out: str | Path, resume: bool = False,
          stop_at_step: int | None = None) -> dict[str, Any]:
    """Train on `data` (FaceScape layout, splits from its manifest) into `out`; returns a summary.

    stop_at_step ends the run early after that step's checkpoint, as if killed (for resume tests and
    time-limited cluster jobs); the schedule still spans config.steps.
    """
    from pose3dfr.data.transforms import ModelTransform

    config.validate()
    out = Path(out)
    info = init_distributed(config.device)
    device = resolve_device(config.device, info.local_rank)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed, config.deterministic, device)

    probe = create_model_config(config)
    cloud_points = int(config.cloud_points_factor * probe.num_points) if probe.use_3d else 0
    train_set = _open_dataset(data, config.train_split, cloud_points, probe.point_features)
    model = build_model(config, train_set.num_identities).to(device)
    detections = None
    if config.align == "pipeline":  # the Verifier's crops: detections of every training image, cached per root
        from pose3dfr.eval.evaluate import pipeline_detections

        detections = pipeline_detections(train_set, range(len(train_set.records)))
    transform = ModelTransform(model.backbone.template, model.backbone.input_size, model.cfg.num_points,
                               model.cfg.point_features, train=True, seed=config.seed,
                               require_points=model.cfg.use_3d, align=config.align, detections=detections)
    samples = SeededSamples(train_set, transform, config.seed)
    global_batch = config.batch_size * info.world_size
    steps_per_epoch = (len(train_set) // info.world_size) // config.batch_size  # DistributedSampler, drop_last
    if steps_per_epoch < 1:
        raise DatasetError(f"{data}: {len(train_set)} training images, fewer than one global batch "
                           f"({config.batch_size} x {info.world_size} processes)")

    optimizer = build_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))
    start = 0
    stem = latest_checkpoint(out) if resume else None
    if stem is not None:
        start = _resume(stem, model, optimizer, scheduler)
    elif config.pretrained and config.imprint_head:  # a resumed run has its head in the checkpoint
        imprint_head(model, _open_dataset(data, config.train_split, 0, 3), config.imprint_images_per_identity,
                     config.seed, device, config.align, detections)
    if info.enabled:
        _check_same_start(start, out)
    if info.is_main:
        print(f"{'resuming from ' + str(stem) if stem else 'starting'} at step {start}/{config.steps}: "
              f"{len(train_set)} images, {train_set.num_identities} identities, {steps_per_epoch} steps/epoch, "
              f"{info.world_size} process(es) on {device}")
        (out / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2))
    net = model
    if info.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=config.ddp_find_unused_parameters)

    val_set = _validation_set(data, config) if info.is_main else None
    val_interval = config.val_interval or steps_per_epoch
    logger = RunLogger(out, info.is_main, config.tensorboard)
    last_validation: dict[str, Any] | None = None
    end = min(config.steps, stop_at_step) if stop_at_step is not None else config.steps
    progress = _progress(config.steps, start, info.is_main)
    if val_set is not None and config.val_at_start and start == 0:
        _validate(model, val_set, config, 0, logger)  # the starting model's TAR: what training must improve on
    set_train_mode(model, config)
    batches = _batches(samples, config, info, start, steps_per_epoch)
    try:
        for step in range(start + 1, end + 1):
            tick = time.perf_counter()
            losses = _train_step(net, model, next(batches), optimizer, scheduler, config, device)
            rate = global_batch / max(time.perf_counter() - tick, 1e-9)
            row = {"step": step, "epoch": (step - 1) // steps_per_epoch, "samples_per_s": rate, **losses}
            progress.update(1)
            progress.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k.startswith("loss")} | {"samples/s": f"{rate:.1f}"})
            if step % config.log_interval == 0 or step == end:
                logger.log(row)
            if val_set is not None and (step % val_interval == 0 or step == config.steps):
                last_validation = _validate(model, val_set, config, step, logger)
                set_train_mode(model, config)
            if info.is_main and (step % config.checkpoint_interval == 0 or step == end):
                save_checkpoint(out, model, optimizer, scheduler, step, _extra(config, step, last_validation),
                                config.keep_checkpoints)
        if info.enabled:
            _broadcast_buffers(model)
        summary = {"step": end, "finished": end == config.steps, "out": str(out)}
        if end == config.steps and info.is_main:
            if last_validation is None and val_set is not None:
                last_validation = _validate(model, val_set, config, end, logger)
            _atomic_save_model(model, out / FINAL_STEM, _extra(config, end, last_validation))
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


def _check_same_start(start: int, out: Path) -> None:
    """Every rank must resume from the same step (the run folder must be visible to every node)."""
    steps = torch.tensor([start, -start], dtype=torch.int64)
    dist.all_reduce(steps, op=dist.ReduceOp.MAX)
    if int(steps[0]) != start or int(-steps[1]) != start:
        raise CheckpointError(f"{out}: ranks found different checkpoints to resume from (steps "
                              f"{int(-steps[1])}..{int(steps[0])}); put --out on a file system every node sees")


def _broadcast_buffers(model: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BN statistics, AdaFace norm EMA): DDP syncs them at the start of
    each forward, so after the last step each rank still holds the statistics of its own last batch."""
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


def create_model_config(config: TrainConfig):
    """The ModelConfig the run will build (before the data fixes num_classes)."""
    from pose3dfr.models import model_config

    return model_config(config.model, **config.model_overrides)


def _progress(total: int, initial: int, active: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not active, desc="train", unit="step", dynamic_ncols=True)


def _train_step(net: torch.nn.Module, model: torch.nn.Module, batch: dict[str, Any],
                optimizer: torch.optim.Optimizer, scheduler: Any, config: TrainConfig,
                device: torch.device) -> dict[str, float]:
    images = batch["image"].to(device, non_blocking=True)
    points = batch["points"].to(device, non_blocking=True) if batch["points"] is not None else None
    labels = batch["label"].to(device, non_blocking=True)
    lr = optimizer.param_groups[-1]["lr"]  # the rate this step uses (the non-backbone group)
    result = net(images, points if model.cfg.use_3d else None, labels)
    loss = result["loss"]
    if not torch.isfinite(loss):
        raise Pose3DFRError(f"training diverged: loss is {loss.item()} (lower lr or check the data)")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config.grad_clip)
    optimizer.step()
    scheduler.step()
    losses = {k: float(result[k].detach()) for k in ("loss", "loss_2d", "loss_3d", "loss_je") if result.get(k) is not None}
    return {"lr": lr, **losses}


def _validation_set(data: str | Path, config: TrainConfig):
    """The per-pose validation images (no points needed), or None when off or the data has no such split."""
    if not config.val_split:
        return None
    try:
        return _open_dataset(data, config.val_split, 0, 3)
    except DatasetError as exc:
        print(f"no per-pose validation: {exc}")
        return None


def _validate(model: torch.nn.Module, val_set: Any, config: TrainConfig, step: int,
              logger: RunLogger) -> dict[str, Any] | None:
    from pose3dfr.eval.evaluate import default_image_transform

    try:
        oracle = config.eval.align == "oracle"  # pipeline: evaluate_model crops from the cached detections
        results = evaluate_model(model, val_set, config.eval, default_image_transform(model, config.seed) if oracle else None)
    except DatasetError as exc:  # e.g. no frontal view in the validation split
        print(f"validation skipped at step {step}: {exc}")
        return None
    if results["overall"]["impostor_pairs"] == 0:
        print(f"validation at step {step}: split {config.val_split!r} has {results['protocol']['identities']} "
              "identity, so no impostor pairs: no TAR and no calibration thresholds")
    logger.log({"step": step, **_flat_validation(results, config.eval.fars)})
    return results


def _extra(config: TrainConfig, step: int, validation: dict[str, Any] | None) -> dict[str, Any]:
    extra: dict[str, Any] = {"train_config": config.to_dict(), "step": step}
    if validation is not None:
        extra["calibration"] = validation["calibration"]
        extra["validation"] = {"split": config.eval.split, "overall": validation["overall"],
                               "bins": validation["bins"]}
    return extra


def state_dict_digest(model: torch.nn.Module) -> str:
    """sha256 over every tensor of the state dict (names and raw bytes, sorted by name)."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------

