"""What the training loop reads: the FaceScape-layout split, seeded samples and this rank's endless batches.

Every augmentation draw comes from a generator seeded by (seed, epoch, index) and the shuffle from
DistributedSampler(seed).set_epoch(epoch), so batch k of a run is the same after a resume, with any number
of DataLoader workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from pose3dfr.data.facescape import FaceScapeMultiView
from pose3dfr.data.transforms import collate
from pose3dfr.engine.config import TrainConfig
from pose3dfr.engine.distributed import DistInfo

WORKER_SEED_STRIDE = 100003  # a prime: worker-seed generators of (seed, epoch) pairs do not collide


def open_dataset(data: str | Path, split: str, num_points: int, point_features: int) -> FaceScapeMultiView:
    """One split of the data root (num_points=0: images only)."""
    return FaceScapeMultiView(data, split=split, num_points=num_points, point_features=point_features)


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


def training_batches(train_set: Dataset, config: TrainConfig, info: DistInfo, start_step: int,
                     steps_per_epoch: int) -> Iterator[dict[str, Any]]:
    """Endless stream of this rank's collated training batches from `start_step` on."""
    sampler = DistributedSampler(train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=config.seed, drop_last=True)
    epoch, skip = divmod(start_step, steps_per_epoch)
    while True:
        generator = torch.Generator().manual_seed(config.seed * WORKER_SEED_STRIDE + epoch)  # worker seeds only
        loader = DataLoader(train_set, batch_sampler=EpochBatches(sampler, config.batch_size, epoch, skip),
                            num_workers=config.num_workers, collate_fn=collate, generator=generator,
                            persistent_workers=False)
        yield from loader
        epoch, skip = epoch + 1, 0
