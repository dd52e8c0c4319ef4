"""Fresh prior batches for training: an endless `PriorStream` and its `PriorDataModule`."""

from __future__ import annotations

import math
from collections.abc import Iterator

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset

from pfnkit.data import Batch, Prior
from pfnkit.training.config import TrainConfig, stream_seed

__all__ = ["PriorDataModule", "PriorStream"]


class PriorStream(IterableDataset):
    """Endless stream of prior batches; each (rank, worker, resume offset) gets its own seed."""

    def __init__(
        self, prior: Prior, config: TrainConfig, *, rank: int = 0, offset: int = 0
    ) -> None:
        super().__init__()
        self.prior = prior
        self.config = config
        self.rank = rank
        self.offset = offset

    def draw_n_ctx(self, generator: torch.Generator) -> int:
        cfg = self.config
        if float(torch.rand((), generator=generator)) < cfg.log_uniform_fraction:
            shift = 1 if cfg.n_ctx_min == 0 else 0  # log-uniform over n + 1 when 0 is allowed
            lo, hi = math.log(cfg.n_ctx_min + shift), math.log(cfg.n_ctx_max + 1 + shift)
            u = float(torch.rand((), generator=generator))
            return min(cfg.n_ctx_max, int(math.exp(lo + (hi - lo) * u)) - shift)
        return int(torch.randint(cfg.n_ctx_min, cfg.n_ctx_max + 1, (), generator=generator))

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        worker = 0 if info is None else info.id
        if info is not None:
            torch.set_num_threads(1)
        generator = torch.Generator().manual_seed(
            stream_seed(self.config.seed, self.rank, worker, self.offset)
        )
        while True:
            n_ctx = self.draw_n_ctx(generator)
            yield self.prior.sample(
                self.config.batch_size, n_ctx, self.config.n_qry, generator=generator
            )


class PriorDataModule(L.LightningDataModule):
    """Streams fresh prior batches through DataLoader workers."""

    def __init__(self, prior: Prior, config: TrainConfig, *, offset: int = 0) -> None:
        super().__init__()
        self.prior = prior
        self.config = config
        self.offset = offset

    def transfer_batch_to_device(
        self, batch: Batch, device: torch.device, dataloader_idx: int
    ) -> Batch:
        return batch.to(device)

    def train_dataloader(self) -> DataLoader:
        rank = self.trainer.global_rank if self.trainer is not None else 0
        stream = PriorStream(self.prior, self.config, rank=rank, offset=self.offset)
        workers = self.config.num_workers
        return DataLoader(
            stream,
            batch_size=None,
            num_workers=workers,
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
        )
