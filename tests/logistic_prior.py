"""A linear-softmax classification prior for tests: the smallest task family a PFN classifier fits.

Each task draws how many of the `num_features` inputs are active (the rest are zero, as
the estimators' "pad" feature mapping fills them), how many of the `n_classes` labels
occur, a weight matrix and biases, then labels from softmax(x W + b).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from pfnkit.data import Batch

__all__ = ["LogisticPrior", "LogisticPriorConfig"]


@dataclass(frozen=True, kw_only=True)
class LogisticPriorConfig:
    """Linear-softmax tasks.

    Attributes:
        num_features: input dimension D (inputs are standard normal).
        n_classes: the most labels a task uses (the model's head width).
        min_classes: the fewest labels a task uses.
        scale_low: smallest logit scale (noisy labels).
        scale_high: largest logit scale (nearly separable classes).
    """

    num_features: int = 2
    n_classes: int = 2
    min_classes: int = 2
    scale_low: float = 1.0
    scale_high: float = 10.0

    def __post_init__(self) -> None:
        if not 2 <= self.min_classes <= self.n_classes or self.num_features < 1:
            raise ValueError("need 2 <= min_classes <= n_classes and num_features >= 1")
        if not 0 < self.scale_low <= self.scale_high:
            raise ValueError("need 0 < scale_low <= scale_high")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class LogisticPrior:
    """Draws batches of linear-softmax classification tasks; labels are floats 0..C-1."""

    def __init__(self, config: LogisticPriorConfig | None = None) -> None:
        self.config = config or LogisticPriorConfig()

    def sample(
        self, batch_size: int, n_ctx: int, n_qry: int, *, generator: torch.Generator
    ) -> Batch:
        cfg, b, d, c = self.config, batch_size, self.config.num_features, self.config.n_classes
        n = n_ctx + n_qry
        active_B = torch.randint(1, d + 1, (b,), generator=generator)
        feature_mask_BD = torch.arange(d)[None, :] < active_B[:, None]
        x_BND = torch.randn(b, n, d, generator=generator) * feature_mask_BD[:, None, :]
        used_B = torch.randint(cfg.min_classes, c + 1, (b,), generator=generator)
        log_lo, log_hi = math.log(cfg.scale_low), math.log(cfg.scale_high)
        scale_B = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(b, generator=generator))
        weight_BDC = torch.randn(b, d, c, generator=generator)
        weight_BDC = weight_BDC * (scale_B / active_B.sqrt())[:, None, None]
        bias_BC = torch.randn(b, c, generator=generator)
        logits_BNC = x_BND @ weight_BDC + bias_BC[:, None, :]
        unused_BC = torch.arange(c)[None, :] >= used_B[:, None]
        logits_BNC = logits_BNC.masked_fill(unused_BC[:, None, :], -math.inf)
        probs = torch.softmax(logits_BNC, dim=-1).reshape(-1, c)
        y_BN = torch.multinomial(probs, 1, generator=generator).reshape(b, n).float()
        return Batch(
            x_ctx=x_BND[:, :n_ctx],
            y_ctx=y_BN[:, :n_ctx],
            x_qry=x_BND[:, n_ctx:],
            y_qry=y_BN[:, n_ctx:],
            meta={"n_classes": used_B, "n_active_features": active_B},
        )
