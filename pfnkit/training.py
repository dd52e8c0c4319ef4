"""Pretraining on Lightning: a prior-streaming DataModule, the LightningModule, `pretrain()`."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import (
    LearningRateMonitor,
    ModelCheckpoint,
    RichProgressBar,
    Timer,
)
from lightning.pytorch.loggers import CSVLogger
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import DataLoader, IterableDataset

from pfnkit.checkpoint import load_checkpoint
from pfnkit.data import Batch, Prior
from pfnkit.distributions import borders_from_samples
from pfnkit.fisher import fisher_trace_estimate
from pfnkit.models import PFN, DistributionTransformer, DTConfig, PFNConfig

__all__ = [
    "PFNLightningModule",
    "PriorDataModule",
    "PriorStream",
    "TrainConfig",
    "initial_model",
    "pretrain",
    "training_summary",
]

log = logging.getLogger(__name__)

_PRECISIONS = ("32-true", "bf16-mixed")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How to pretrain a PFN on a prior.

    Attributes:
        steps: optimizer steps.
        batch_size: tasks per step.
        n_ctx_min: smallest context size drawn.
        n_ctx_max: largest context size drawn (the "trained context size").
        log_uniform_fraction: share of steps whose context size is drawn log-uniformly
            (the rest uniformly), so that small contexts are seen often enough.
        n_qry: query points per task.
        lr: peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warmup before the cosine decay.
        min_lr_ratio: final learning rate as a fraction of `lr`.
        grad_clip: gradient-norm clipping threshold.
        n_border_tasks: prior tasks (of `n_qry` points) used to place the bar borders.
        seed: root seed; every rank and worker derives its own stream from it.
        num_workers: DataLoader worker processes that sample the prior.
        precision: "32-true" or "bf16-mixed" (autocast).
        compile: wrap the model in `torch.compile`.
        checkpoint_every: steps between resumable Lightning checkpoints.
        max_minutes: wall-clock cap on training (0 = none).
        accelerator: Lightning accelerator ("cpu", "gpu", "auto").
        devices: devices per node.
        num_nodes: nodes.
        strategy: Lightning strategy ("auto", "ddp", ...).
        fisher_weight: weight β of the Fisher-information penalty
            β·E‖∇_D log q(y | D)‖² on the context data D = (x_ctx, y_ctx), with y drawn
            from the model (Glöckler et al., arXiv 2305.14984); 0 turns it off.
        fisher_samples: model samples per query point in the penalty's estimate.
        init_from: checkpoint name or path whose weights (and bar borders) training
            starts from instead of a fresh initialisation; "" = fresh.
    """

    steps: int = 1000
    batch_size: int = 64
    n_ctx_min: int = 1
    n_ctx_max: int = 128
    log_uniform_fraction: float = 0.5
    n_qry: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.0
    warmup_steps: int = 200
    min_lr_ratio: float = 0.02
    grad_clip: float = 1.0
    n_border_tasks: int = 2000
    seed: int = 0
    num_workers: int = 1
    precision: str = "32-true"
    compile: bool = False
    checkpoint_every: int = 250
    max_minutes: float = 0.0
    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    fisher_weight: float = 0.0
    fisher_samples: int = 2
    init_from: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.n_ctx_min <= self.n_ctx_max or self.n_ctx_max < 1:
            raise ValueError(
                f"need 0 <= n_ctx_min <= n_ctx_max and n_ctx_max >= 1, got {self.n_ctx_min}, "
                f"{self.n_ctx_max}"
            )
        if self.steps < 1 or self.batch_size < 1 or self.n_qry < 1:
            raise ValueError("steps, batch_size and n_qry must be positive")
        if not 0.0 <= self.log_uniform_fraction <= 1.0:
            raise ValueError("log_uniform_fraction must lie in [0, 1]")
        if self.precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {_PRECISIONS}, got {self.precision!r}")
        if self.warmup_steps < 0 or self.lr <= 0 or self.grad_clip <= 0:
            raise ValueError("lr and grad_clip must be positive and warmup_steps non-negative")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
        if self.num_workers < 0 or self.checkpoint_every < 1 or self.n_border_tasks < 1:
            raise ValueError("need num_workers >= 0, checkpoint_every >= 1, n_border_tasks >= 1")
        if self.fisher_weight < 0 or self.fisher_samples < 1:
            raise ValueError(
                f"need fisher_weight >= 0 and fisher_samples >= 1, got {self.fisher_weight}, "
                f"{self.fisher_samples}"
            )
        if self.max_minutes < 0:
            raise ValueError(f"max_minutes must be >= 0 (0 = no cap), got {self.max_minutes}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return cls(**data)


def _stream_seed(*parts: int) -> int:
    """An independent 63-bit seed for each combination of `parts` (SeedSequence hashing)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] >> 1)


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
            _stream_seed(self.config.seed, self.rank, worker, self.offset)
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


def warmup_cosine(step: int, config: TrainConfig) -> float:
    """Learning-rate multiplier: linear warmup, then cosine decay to `min_lr_ratio`."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine


class PFNLightningModule(L.LightningModule):
    """Minimises -log q(target | data) on streamed prior tasks.

    For a PFN the target is y_qry given the context; for a Distribution Transformer it is
    the θ that generated the observations, given the prior in `meta`.
    """

    def __init__(self, model: PFN | DistributionTransformer, config: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config
        if config.compile:
            self.model.compile()

    def loss(self, batch: Batch) -> torch.Tensor:
        if isinstance(self.model, DistributionTransformer):
            return -self.model.from_batch(batch).log_prob(batch.meta["theta"]).mean()
        dist = self.model(batch.x_ctx, batch.y_ctx, batch.x_qry)
        target = batch.y_qry.long() if self.model.config.is_classifier else batch.y_qry
        return -dist.log_prob(target).mean()

    def regularised_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(NLL, Fisher-trace estimate) of one batch; the penalty needs a double backward.

        The fused CPU attention kernel has no double backward, so this pass runs SDPA's
        math backend. Model samples come from a generator seeded by (seed, rank, step).
        """
        cfg = self.config
        generator = torch.Generator(device=batch.y_ctx.device).manual_seed(
            _stream_seed(cfg.seed, self.global_rank, self.global_step, 7)
        )
        x_ctx = batch.x_ctx.detach().requires_grad_(True)
        y_ctx = batch.y_ctx.detach().requires_grad_(True)
        with sdpa_kernel(SDPBackend.MATH):
            dist = self.model(x_ctx, y_ctx, batch.x_qry)
            nll = -dist.log_prob(batch.y_qry).mean()
            with torch.no_grad():
                y_SBM = dist.sample((cfg.fisher_samples,), generator=generator)
            log_prob_BSM = dist.log_prob(y_SBM.to(dist.logits.dtype)).transpose(0, 1)
            fisher = fisher_trace_estimate(log_prob_BSM, (x_ctx, y_ctx), generator=generator)
        return nll, fisher.mean()

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        if self.config.fisher_weight > 0 and isinstance(self.model, DistributionTransformer):
            raise NotImplementedError("the Fisher penalty is implemented for PFNs only")
        if self.config.fisher_weight > 0 and self.model.config.is_classifier:
            raise NotImplementedError(
                "the Fisher penalty is implemented for regression PFNs only; set fisher_weight = 0"
            )
        if self.config.fisher_weight > 0:
            nll, fisher = self.regularised_loss(batch)
            loss = nll + self.config.fisher_weight * fisher
            self.log("train/fisher", fisher, prog_bar=True, batch_size=batch.batch_size)
        else:
            loss = nll = self.loss(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss became {loss.item()} at step {self.global_step}"
            )
        self.log("train/nll", nll, prog_bar=True, batch_size=batch.batch_size)
        self.log("train/n_ctx", float(batch.n_ctx), batch_size=batch.batch_size)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        cfg = self.config
        optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, cfg)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def prior_borders(prior: Prior, model_config: PFNConfig, train_config: TrainConfig) -> torch.Tensor:
    """Equal-mass bar borders from fresh prior targets (its own seed stream)."""
    generator = torch.Generator().manual_seed(_stream_seed(train_config.seed, 2**31 - 1))
    batch = prior.sample(train_config.n_border_tasks, 1, train_config.n_qry, generator=generator)
    return borders_from_samples(batch.y_qry, model_config.n_bars)


def initial_model(
    model_config: PFNConfig | DTConfig, prior: Prior, train_config: TrainConfig
) -> PFN | DistributionTransformer:
    """The model `pretrain` starts from, with weights seeded by the config.

    A regression PFN's bar borders come from prior targets. With `train_config.init_from`, it is
    that checkpoint's model instead (fine-tuning), which must have exactly
    `model_config`. The global RNG is forked, so the caller's random state is left
    untouched.
    """
    if train_config.init_from:
        parent = load_checkpoint(train_config.init_from).model
        if parent.config != model_config:
            raise ValueError(
                f"init_from={train_config.init_from!r} has model config {parent.config}, "
                f"but training asks for {model_config}; use the parent's [model] section"
            )
        return parent.train()
    if isinstance(model_config, DTConfig):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_stream_seed(train_config.seed, 2**31 - 2))
            return DistributionTransformer(model_config)
    if train_config.n_ctx_min < 1:
        raise ValueError("a PFN needs at least one context point: set n_ctx_min >= 1")
    borders = None  # a classifier's Categorical head needs no bar borders
    if not model_config.is_classifier:
        borders = prior_borders(prior, model_config, train_config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_stream_seed(train_config.seed, 2**31 - 2))
        return PFN(model_config, borders)


def training_summary(run_dir: str | Path, *, init_from: str = "") -> dict[str, Any]:
    """Optimizer steps and training minutes (summed over resumes) from `run_dir`'s last.ckpt.

    With `init_from` (a fine-tuned run), the parent checkpoint's name, sha256, steps and
    minutes are added, with the total minutes of both.
    """
    state = torch.load(Path(run_dir) / "checkpoints" / "last.ckpt", map_location="cpu",
                       weights_only=False)  # fmt: skip
    timers = [v for k, v in state.get("callbacks", {}).items() if k.startswith("Timer")]
    seconds = timers[0]["time_elapsed"]["train"] if timers else float("nan")
    record: dict[str, Any] = {
        "optimizer_steps": int(state["global_step"]),
        "train_minutes": seconds / 60,
    }
    if init_from:
        parent = load_checkpoint(init_from)
        record["init_from"] = {
            "name": parent.name, "sha256": parent.card["sha256"], **parent.card["training"]
        }  # fmt: skip
        parent_minutes = parent.card["training"].get("train_minutes", 0.0)
        record["total_train_minutes"] = record["train_minutes"] + parent_minutes
    return record


def _resume_step(ckpt_path: Path | None) -> int:
    if ckpt_path is None:
        return 0
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    return int(state.get("global_step", 0))


def pretrain(
    model_config: PFNConfig | DTConfig,
    prior: Prior,
    train_config: TrainConfig,
    *,
    run_dir: str | Path = "runs/pfn",
    resume: bool = True,
    progress: bool = False,
) -> PFN | DistributionTransformer:
    """Pretrain a PFN (or a Distribution Transformer) on `prior`; return it in eval mode on CPU.

    Resumable Lightning checkpoints and a CSV log go to `run_dir`; with `resume`, an
    existing `run_dir/checkpoints/last.ckpt` is picked up where it stopped.
    """
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    ckpt_path = last if resume and last.exists() else None
    if ckpt_path is not None:
        log.info("resuming from %s", ckpt_path)
    model = initial_model(model_config, prior, train_config)
    module = PFNLightningModule(model, train_config)
    data = PriorDataModule(prior, train_config, offset=_resume_step(ckpt_path))
    minutes = train_config.max_minutes
    callbacks: list[L.Callback] = [
        ModelCheckpoint(
            dirpath=ckpt_dir, every_n_train_steps=train_config.checkpoint_every, save_last=True
        ),
        LearningRateMonitor(logging_interval="step"),
        # records training time in every checkpoint (summed over resumes); stops at max_minutes
        Timer(
            duration={"minutes": minutes} if minutes > 0 else None, interval="step", verbose=False
        ),
    ]
    if progress:
        callbacks.append(RichProgressBar())
    trainer = L.Trainer(
        max_steps=train_config.steps,
        accelerator=train_config.accelerator,
        devices=train_config.devices,
        num_nodes=train_config.num_nodes,
        strategy=train_config.strategy,
        precision=train_config.precision,
        gradient_clip_val=train_config.grad_clip,
        logger=CSVLogger(run_dir, name="log"),  # one version_K folder per (resumed) run
        callbacks=callbacks,
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=10,
        default_root_dir=run_dir,
    )
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    # Lightning keeps the periodic last.ckpt when a Timer stops the run between saves;
    # save the final state so a resume and `training_summary` start from where it ended.
    trainer.save_checkpoint(last)
    return module.model.to("cpu").eval()
