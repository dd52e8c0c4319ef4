"""Maximise an acquisition over the unit cube: many random starts, refined by gradients.

As BoTorch's ``optimize_acqf``: score many raw candidates (a scrambled Sobol set, plus
Gaussian jitter around the best observed points), keep the best few as starts, and climb
each with Adam, projecting back onto the cube after every step. Each query point's
prediction is independent of the others (queries never attend to each other), so all
starts climb in one batch, and the sum of their scores has each start's own gradient.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["AcquisitionOptimizerConfig", "maximize_acquisition"]


@dataclass(frozen=True, kw_only=True)
class AcquisitionOptimizerConfig:
    """How `maximize_acquisition` searches the unit cube.

    Attributes:
        n_raw: raw candidates scored without gradients (Sobol points and jitter).
        local_fraction: share of the raw candidates drawn around the best observed
            points (Gaussian jitter of scale `local_scale` in the unit cube).
        local_scale: standard deviation of that jitter.
        n_restarts: best raw candidates refined by gradient ascent.
        n_steps: Adam steps per refinement.
        lr: Adam's step size, in unit-cube lengths.
        min_distance: a proposal closer than this (Euclidean, unit cube) to an observed
            point is replaced by the best candidate farther away, so a deterministic
            objective is not evaluated twice at the same place.
    """

    n_raw: int = 512
    local_fraction: float = 0.25
    local_scale: float = 0.05
    n_restarts: int = 8
    n_steps: int = 40
    lr: float = 0.02
    min_distance: float = 1e-4

    def __post_init__(self) -> None:
        for name in ("n_raw", "n_restarts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.n_steps < 0:
            raise ValueError(f"n_steps must be non-negative, got {self.n_steps}")
        if not 0 <= self.local_fraction < 1:
            raise ValueError(f"local_fraction must lie in [0, 1), got {self.local_fraction}")
        for name in ("local_scale", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.min_distance < 0:
            raise ValueError(f"min_distance must be non-negative, got {self.min_distance}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AcquisitionOptimizerConfig:
        return cls(**data)


def _raw_candidates(
    observed: Tensor, n_raw: int, config: AcquisitionOptimizerConfig, generator: torch.Generator
) -> Tensor:
    """(n_raw, d) candidates: scrambled Sobol points plus jitter around `observed` (n, d)."""
    d = observed.shape[1]
    n_local = int(round(config.local_fraction * n_raw)) if observed.shape[0] else 0
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    sobol = torch.quasirandom.SobolEngine(d, scramble=True, seed=seed)
    global_ = sobol.draw(n_raw - n_local, dtype=torch.float64)
    centres = observed[torch.randint(observed.shape[0], (n_local,), generator=generator)]
    noise = torch.randn(n_local, d, generator=generator, dtype=torch.float64)
    local = (centres + config.local_scale * noise).clamp(0, 1)
    return torch.cat([global_, local])


def _scores(score: Callable[[Tensor], Tensor], u: Tensor) -> Tensor:
    """Scores with every non-finite value (NaN included) as -inf."""
    values = score(u)
    return torch.where(torch.isfinite(values), values, -torch.inf)


def maximize_acquisition(
    score: Callable[[Tensor], Tensor],
    observed: Tensor,
    *,
    generator: torch.Generator,
    config: AcquisitionOptimizerConfig | None = None,
) -> Tensor:
    """The unit-cube point that maximises `score`, away from the observed points.

    Args:
        score: maps (m, d) float64 points of the unit cube to (m,) scores, differentiably.
        observed: (n, d) unit-cube points already evaluated, best first (their first
            quarter centres the local candidates; pass them sorted by value).
        generator: the only source of randomness.
        config: the search; defaults to `AcquisitionOptimizerConfig()`.

    Returns:
        A (d,) float64 point of the unit cube.
    """
    config = config or AcquisitionOptimizerConfig()
    observed = observed.to(torch.float64)
    best_observed = observed[: max(1, observed.shape[0] // 4)]
    raw = _raw_candidates(best_observed, config.n_raw, config, generator)
    with torch.no_grad():
        raw_scores = _scores(score, raw)
    order = torch.argsort(raw_scores, descending=True, stable=True)
    starts = raw[order[: config.n_restarts]].clone().requires_grad_(True)
    best_u, best_s = starts.detach().clone(), raw_scores[order[: config.n_restarts]].clone()
    optimizer = torch.optim.Adam([starts], lr=config.lr)
    for _ in range(config.n_steps):
        optimizer.zero_grad()
        values = _scores(score, starts)
        (-values[torch.isfinite(values)].sum()).backward()
        if starts.grad is not None:
            starts.grad.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
        with torch.no_grad():
            better = values > best_s
            best_u[better], best_s[better] = starts[better], values[better]
        optimizer.step()
        with torch.no_grad():
            starts.clamp_(0, 1)
    with torch.no_grad():  # the last step's point has not been scored yet
        values = _scores(score, starts)
        better = values > best_s
        best_u[better], best_s[better] = starts[better], values[better]
    candidates = torch.cat([best_u, raw[order]])
    candidate_scores = torch.cat([best_s, raw_scores[order]])
    return _best_new_point(candidates, candidate_scores, observed, config.min_distance)


def _best_new_point(
    candidates: Tensor, scores: Tensor, observed: Tensor, min_distance: float
) -> Tensor:
    """The highest-scoring candidate at least `min_distance` from every observed point."""
    if observed.shape[0]:
        far = torch.cdist(candidates, observed).min(dim=1).values >= min_distance
    else:
        far = torch.ones(candidates.shape[0], dtype=torch.bool)
    if not bool(far.any()):
        return candidates[0]
    scores = torch.where(far, scores, -torch.inf)
    return candidates[int(torch.argmax(scores))]
