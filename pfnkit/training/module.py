"""The LightningModule: -log q(target | data) on streamed prior tasks, optional Fisher penalty."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from pfnkit.data import Batch
from pfnkit.models import PFN, DistributionTransformer
from pfnkit.training.config import TrainConfig, stream_seed
from pfnkit.training.fisher import fisher_trace_estimate

__all__ = ["PFNLightningModule", "warmup_cosine"]


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
            stream_seed(cfg.seed, self.global_rank, self.global_step, 7)
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
