"""`pretrain()`: the initial model, the Lightning Trainer and the training summary."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    LearningRateMonitor,
    ModelCheckpoint,
    RichProgressBar,
    Timer,
)
from lightning.pytorch.loggers import CSVLogger

from pfnkit.checkpoint import load_checkpoint
from pfnkit.data import Prior
from pfnkit.distributions import borders_from_samples
from pfnkit.models import PFN, DistributionTransformer, DTConfig, PFNConfig
from pfnkit.training.config import TrainConfig, stream_seed
from pfnkit.training.module import PFNLightningModule
from pfnkit.training.stream import PriorDataModule

__all__ = ["initial_model", "pretrain", "prior_borders", "training_summary"]

log = logging.getLogger(__name__)


def prior_borders(prior: Prior, model_config: PFNConfig, train_config: TrainConfig) -> torch.Tensor:
    """Equal-mass bar borders from fresh prior targets (its own seed stream)."""
    generator = torch.Generator().manual_seed(stream_seed(train_config.seed, 2**31 - 1))
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
            torch.manual_seed(stream_seed(train_config.seed, 2**31 - 2))
            return DistributionTransformer(model_config)
    if train_config.n_ctx_min < 1:
        raise ValueError("a PFN needs at least one context point: set n_ctx_min >= 1")
    borders = None  # a classifier's Categorical head needs no bar borders
    if not model_config.is_classifier:
        borders = prior_borders(prior, model_config, train_config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(train_config.seed, 2**31 - 2))
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
