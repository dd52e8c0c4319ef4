"""`pretrain()`: the initial model, the Lightning Trainer and the training summary."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
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

from pfnkit.checkpoint import Checkpoint, load_checkpoint
from pfnkit.data import Prior
from pfnkit.distributions import borders_from_samples
from pfnkit.models import PFN, DistributionTransformer, DTConfig, PFNConfig
from pfnkit.models.context_scaling import standardized_targets
from pfnkit.training.config import TrainConfig, stream_seed
from pfnkit.training.module import PFNLightningModule
from pfnkit.training.stream import PriorDataModule, PriorStream

__all__ = ["PretrainResult", "initial_model", "pretrain", "prior_borders"]

log = logging.getLogger(__name__)

# Lightning's product advertisements ("💡 Tip: For seamless cloud logging ...") and the torch
# deprecation its pytree helper triggers on every step; `pretrain` drops both, and only them.
_LIGHTNING_TIP_PREFIX = "💡 Tip:"
_RANK_ZERO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)
_LEAF_SPEC_DEPRECATION = r"`isinstance\(treespec, LeafSpec\)` is deprecated"


@dataclass(frozen=True)
class PretrainResult:
    """What `pretrain` returns.

    Attributes:
        model: the trained model, in eval mode on CPU.
        summary: the card's ``training`` record: "optimizer_steps" and "train_minutes"
            (both summed over resumes); after `init_from`, also "init_from" (the parent's
            name, sha256 and own training record) and "total_train_minutes".
    """

    model: PFN | DistributionTransformer
    summary: dict[str, Any]


class _DropLightningTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_LIGHTNING_TIP_PREFIX)


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Within the block, drop Lightning's tips and the LeafSpec deprecation warning."""
    tips = _DropLightningTips()
    loggers = [logging.getLogger(name) for name in _RANK_ZERO_LOGGERS]
    for logger in loggers:
        logger.addFilter(tips)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=_LEAF_SPEC_DEPRECATION, category=FutureWarning
            )
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(tips)


BORDER_GROUPS = 32  # context sizes drawn for the borders of a per-context standardizing PFN


def prior_borders(prior: Prior, model_config: PFNConfig, train_config: TrainConfig) -> torch.Tensor:
    """Equal-mass bar borders from fresh prior targets (its own seed stream).

    A PFN that standardizes per context (`PFNConfig.y_context_floor`) has its bars on the z
    scale, whose spread depends on the context size: its targets come from
    `BORDER_GROUPS` groups of tasks, each with a context size drawn as training draws them,
    standardized by their own context.
    """
    generator = torch.Generator().manual_seed(stream_seed(train_config.seed, 2**31 - 1))
    n_tasks, n_qry = train_config.n_border_tasks, train_config.n_qry
    floor = model_config.y_context_floor
    if floor <= 0:
        batch = prior.sample(n_tasks, 1, n_qry, generator=generator)
        return borders_from_samples(batch.y_qry, model_config.n_bars)
    stream, targets = PriorStream(prior, train_config), []
    for _ in range(BORDER_GROUPS):
        n_ctx = stream.draw_n_ctx(generator)
        batch = prior.sample(-(-n_tasks // BORDER_GROUPS), n_ctx, n_qry, generator=generator)
        targets.append(standardized_targets(batch.y_ctx, batch.y_qry, floor).reshape(-1))
    return borders_from_samples(torch.cat(targets), model_config.n_bars)


def initial_model(
    model_config: PFNConfig | DTConfig,
    prior: Prior,
    train_config: TrainConfig,
    *,
    parent: Checkpoint | None = None,
) -> PFN | DistributionTransformer:
    """The model `pretrain` starts from, with weights seeded by the config.

    A regression PFN's bar borders come from prior targets. With `train_config.init_from`, it is
    that checkpoint's model instead (fine-tuning), which must have exactly
    `model_config`; pass the loaded checkpoint as `parent` to skip loading it again.
    `train_config.init_borders = "prior"` then replaces the parent's bar borders with this
    prior's (the network's weights are kept). The
    global RNG is forked, so the caller's random state is left untouched.
    """
    if train_config.init_from:
        model = (parent or load_checkpoint(train_config.init_from)).model
        if model.config != model_config:
            raise ValueError(
                f"init_from={train_config.init_from!r} has model config {model.config}, "
                f"but training asks for {model_config}; use the parent's [model] section"
            )
        if train_config.init_borders == "prior":
            if not isinstance(model_config, PFNConfig) or model_config.is_classifier:
                raise ValueError(
                    f'init_borders = "prior" needs a regression PFN parent; '
                    f"{train_config.init_from!r} has no bar borders"
                )
            model.borders.copy_(prior_borders(prior, model_config, train_config))
        return model.train()
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


def _training_summary(
    trainer: L.Trainer, timer: Timer, parent: Checkpoint | None
) -> dict[str, Any]:
    """The card's training record from the live Trainer; the Timer carries resumed time."""
    record: dict[str, Any] = {
        "optimizer_steps": int(trainer.global_step),
        "train_minutes": timer.time_elapsed("train") / 60,
    }
    if parent is not None:
        training = parent.card["training"]
        record["init_from"] = {"name": parent.name, "sha256": parent.card["sha256"], **training}
        parent_total = training.get("total_train_minutes", training.get("train_minutes", 0.0))
        record["total_train_minutes"] = record["train_minutes"] + parent_total
    return record


def _resume_step(ckpt_path: Path | None) -> int:
    if ckpt_path is None:
        return 0
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    return int(state.get("global_step", 0))


def _trainer(config: TrainConfig, run_dir: Path, timer: Timer, progress: bool) -> L.Trainer:
    callbacks: list[L.Callback] = [
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            every_n_train_steps=config.checkpoint_every,
            save_last=True,
        ),
        LearningRateMonitor(logging_interval="step"),
        timer,
    ]
    if progress:
        callbacks.append(RichProgressBar())
    return L.Trainer(
        max_steps=config.steps,
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        precision=config.precision,
        gradient_clip_val=config.grad_clip,
        logger=CSVLogger(run_dir, name="log"),  # one version_K folder per (resumed) run
        callbacks=callbacks,
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=10,
        default_root_dir=run_dir,
    )


def pretrain(
    model_config: PFNConfig | DTConfig,
    prior: Prior,
    train_config: TrainConfig,
    *,
    run_dir: str | Path = "runs/pfn",
    resume: bool = True,
    progress: bool = False,
) -> PretrainResult:
    """Pretrain a PFN (or a Distribution Transformer) on `prior`.

    Resumable Lightning checkpoints and a CSV log go to `run_dir`; with `resume`, an
    existing `run_dir/checkpoints/last.ckpt` is picked up where it stopped.

    Returns:
        The model in eval mode on CPU, and the card's training record (steps and minutes
        summed over resumes; the parent's record after `init_from`).
    """
    run_dir = Path(run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    ckpt_path = last if resume and last.exists() else None
    if ckpt_path is not None:
        log.info("resuming from %s", ckpt_path)
    parent = load_checkpoint(train_config.init_from) if train_config.init_from else None
    model = initial_model(model_config, prior, train_config, parent=parent)
    module = PFNLightningModule(model, train_config)
    data = PriorDataModule(prior, train_config, offset=_resume_step(ckpt_path))
    minutes = train_config.max_minutes
    # records training time in every checkpoint (summed over resumes); stops at max_minutes
    timer = Timer(
        duration={"minutes": minutes} if minutes > 0 else None, interval="step", verbose=False
    )
    with _quiet_lightning():
        trainer = _trainer(train_config, run_dir, timer, progress)
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
        # Lightning keeps the periodic last.ckpt when a Timer stops the run between saves;
        # save the final state so that a resume starts from where it ended.
        trainer.save_checkpoint(last, weights_only=False)  # a resumable checkpoint
    summary = _training_summary(trainer, timer, parent)
    return PretrainResult(model=module.model.to("cpu").eval(), summary=summary)
