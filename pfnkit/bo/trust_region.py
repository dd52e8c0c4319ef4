"""A trust region around the incumbent, in which the PFN reads a local, rescaled context.

TuRBO (Eriksson et al., "Scalable Global Optimization via Local Bayesian Optimization",
NeurIPS 2019, arXiv 1910.01739) keeps a box of side L around the best point: L doubles
after `success_tolerance` improvements in a row, halves after `failure_tolerance` steps
in a row without one, and restarts at `length_init` once it falls below `length_min`
(TuRBO also discards its data then; here the history is kept, so a restart only widens
the box again). TuRBO climbs a global GP's acquisition inside that box.

pfnkit uses the box for the surrogate's context too: the points inside it are mapped
affinely onto the unit cube and their values re-ranked among themselves, so the PFN sees
a small, nearly space-filling design instead of a tight cluster at the edge of a large
one. That matters for a PFN: trained on designs spread over the cube, it reads a BO run's
clustered points much worse than an ML-II GP does (``benchmarks/bo_designs.py``), and a
global context made it re-sample neighbourhoods it had already explored. The box is
used only when it is smaller than the cube (L < 1) and holds at least `min_points`
observations; otherwise the step is global.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TrustRegion", "TrustRegionConfig"]

IMPROVEMENT_RTOL = 1e-3  # TuRBO's: a success lowers the best value by more than 1e-3 |best|


@dataclass(frozen=True, kw_only=True)
class TrustRegionConfig:
    """TuRBO's trust-region schedule, with its published defaults (side lengths in the cube).

    Attributes:
        length_init: side of the first box, and of the box after a restart.
        length_min: a box below this restarts at `length_init`.
        length_max: the box never grows beyond this.
        success_tolerance: improvements in a row that double the side.
        failure_tolerance: steps in a row without one that halve it; None means
            max(4, d), as TuRBO with batch size 1.
        min_points: fewest observations inside the box for a local step; None means
            d + 2.
    """

    length_init: float = 0.8
    length_min: float = 0.5**7
    length_max: float = 1.6
    success_tolerance: int = 3
    failure_tolerance: int | None = None
    min_points: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.length_min <= self.length_init <= self.length_max:
            raise ValueError(
                "need 0 < length_min <= length_init <= length_max, got "
                f"{self.length_min}, {self.length_init}, {self.length_max}"
            )
        for name in ("success_tolerance", "failure_tolerance", "min_points"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")


class TrustRegion:
    """The side length of the box and the run of successes or failures behind it."""

    def __init__(self, config: TrustRegionConfig, dim: int) -> None:
        self.config = config
        self.dim = int(dim)
        self.failure_tolerance = config.failure_tolerance or max(4, self.dim)
        self.min_points = config.min_points or self.dim + 2
        self.length = config.length_init
        self.successes = 0
        self.failures = 0
        self.restarts = 0

    def update(self, best_before: float, value: float) -> None:
        """Record one proposal's value against the best value before it."""
        if value < best_before - IMPROVEMENT_RTOL * abs(best_before):
            self.successes, self.failures = self.successes + 1, 0
        else:
            self.successes, self.failures = 0, self.failures + 1
        if self.successes == self.config.success_tolerance:
            self.length, self.successes = min(2 * self.length, self.config.length_max), 0
        elif self.failures == self.failure_tolerance:
            self.length, self.failures = self.length / 2, 0
        if self.length < self.config.length_min:
            self.length, self.restarts = self.config.length_init, self.restarts + 1

    def box(self, u_nd: np.ndarray, y_n: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The (low, high) unit-cube corners of the box around the best point, or None.

        None means a global step: the side is at least 1, or fewer than `min_points` of
        the points `u_nd` lie inside the box.
        """
        if self.length >= 1.0:
            return None
        centre = u_nd[int(np.argmin(y_n))]
        low = np.clip(centre - self.length / 2, 0.0, 1.0)
        high = np.clip(centre + self.length / 2, 0.0, 1.0)
        if int(inside(u_nd, low, high).sum()) < self.min_points:
            return None
        return low, high


def inside(u_nd: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """(n,) mask of the points of `u_nd` in the closed box [low, high]."""
    return ((u_nd >= low) & (u_nd <= high)).all(axis=1)
