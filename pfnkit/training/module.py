"""The LightningModule: -log q(target | data) on streamed prior tasks, optional Fisher penalty."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    SequentialLR,
)

from pfnkit.data import Batch
from pfnkit.models import PFN, DistributionTransformer
from pfnkit.training.config import TrainConfig, stream_seed
from pfnkit.training.fisher import fisher_trace_estimate

__all__ = ["PFNLightningModule", "fast_forwarded_schedule", "warmup_cosine_schedule"]


def warmup_cosine_schedule(optimizer: Optimizer, config: TrainConfig) -> LRScheduler:
    """Linear warmup to `config.lr`, then cosine decay to `min_lr_ratio · lr` at `config.steps`.

    With W = warmup_steps, T = steps and r = min_lr_ratio, the multiplier at step s is
    (s + 1) / W for s < W (`LinearLR` from 1/W, at 1 on step W - 1), then
    r + (1 - r) · ½(1 + cos(π (s - W) / max(1, T - W))) (`CosineAnnealingLR`), chained by
    `SequentialLR` at step W. Steps past T are never taken: training stops at T.
    """
    span = max(1, config.steps - config.warmup_steps)
    if config.warmup_steps == 0:
        return CosineAnnealingLR(optimizer, T_max=span, eta_min=config.min_lr_ratio * config.lr)
    warmup = LinearLR(
        optimizer,
        start_factor=1 / config.warmup_steps,
        end_factor=1.0,
        total_iters=config.warmup_steps - 1,
    )
    cosine = CosineAnnealingLR(optimizer, T_max=span, eta_min=config.min_lr_ratio * config.lr)
    return SequentialLR(optimizer, [warmup, cosine], milestones=[config.warmup_steps])


def fast_forwarded_schedule(config: TrainConfig, steps: int) -> LRScheduler:
    """`warmup_cosine_schedule` on a stand-in optimizer, after `steps` optimizer steps."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(()))], lr=config.lr)
    scheduler = warmup_cosine_schedule(optimizer, config)
    for _ in range(steps):
        optimizer.step()  # no gradients: only keeps the step order torch expects
        scheduler.step()
    return scheduler


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
        if self.config.fisher_weight > 0 and self.model.config.y_context_floor > 0:
            raise NotImplementedError(
                "the Fisher penalty is implemented for PFNs with fixed bars; "
                "set fisher_weight = 0 or y_context_floor = 0"
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
        scheduler = warmup_cosine_schedule(optimizer, cfg)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Re-derive the schedule's state, and the optimizer's lr, from this config and step.

        The schedule is a function of (config, step), so a resumed run follows the current
        config (e.g. a larger `steps`), and Lightning checkpoints of the earlier
        `LambdaLR` schedule, whose state `SequentialLR` cannot load, resume as well.
        """
        if not checkpoint.get("lr_schedulers"):
            return
        scheduler = fast_forwarded_schedule(self.config, int(checkpoint["global_step"]))
        checkpoint["lr_schedulers"] = [scheduler.state_dict()]
        for group in checkpoint["optimizer_states"][0]["param_groups"]:
            group["lr"], group["initial_lr"] = scheduler.get_last_lr()[0], self.config.lr
