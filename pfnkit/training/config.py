"""`TrainConfig`, how to pretrain a PFN on a prior, and the seed streams derived from it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["TrainConfig", "stream_seed"]

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
        init_borders: after `init_from`, where a regression PFN's bar borders come from:
            "parent" keeps the parent's, "prior" draws them anew from this prior (for a
            prior whose targets spread wider or narrower than the parent's).
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
    init_borders: str = "parent"

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
        if self.init_borders not in ("parent", "prior"):
            raise ValueError(f'init_borders must be "parent" or "prior", got {self.init_borders!r}')
        if self.init_borders == "prior" and not self.init_from:
            raise ValueError('init_borders = "prior" replaces a parent\'s borders: set init_from')

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return cls(**data)


def stream_seed(*parts: int) -> int:
    """An independent 63-bit seed for each combination of `parts` (SeedSequence hashing)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] >> 1)
