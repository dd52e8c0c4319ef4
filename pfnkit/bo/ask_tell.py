"""Ask/tell Bayesian optimisation with a PFN surrogate, for evaluations that run elsewhere.

Müller et al., "PFNs4BO: In-Context Learning for Bayesian Optimization" (arXiv
2305.17535): the PFN's posterior predictive marginalises the surrogate's
hyperparameters in one forward pass, so no hyperparameters are refitted between steps.
"""

from __future__ import annotations

import logging
import numbers
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pfnkit.bo.acqf_optim import AcquisitionOptimizerConfig, maximize_acquisition
from pfnkit.bo.acquisitions import ACQUISITIONS
from pfnkit.bo.box import Box
from pfnkit.bo.surrogate import DEFAULT_CHECKPOINT, PFNSurrogate
from pfnkit.bo.trust_region import TrustRegion, TrustRegionConfig, inside
from pfnkit.checkpoint import Checkpoint

__all__ = ["AskTellOptimizer", "OptimizeResult", "default_n_init"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OptimizeResult:
    """The history of an optimisation and its best point.

    Attributes:
        xs: (n, d) evaluated points, in the order they were told.
        ys: (n,) their values.
        x_best: (d,) the point of the lowest value.
        y_best: the lowest value.
        ask_seconds: (n,) the optimiser's own time to propose each point (surrogate and
            acquisition search, not the objective); 0 for points of the initial design.
    """

    xs: np.ndarray
    ys: np.ndarray
    x_best: np.ndarray
    y_best: float
    ask_seconds: np.ndarray

    @property
    def n_evals(self) -> int:
        return int(self.ys.shape[0])


def default_n_init(dim: int) -> int:
    """Initial-design size when none is given: d + 1 points, and at least 2."""
    return max(2, dim + 1)


def _key(x: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in x)


class AskTellOptimizer:
    """Minimise a function evaluated elsewhere: `ask` for a point, `tell` its value.

    The first `n_init` points come from a scrambled Sobol design of the box; each later
    point maximises the acquisition under the PFN surrogate's posterior (see
    `PFNSurrogate` for how the box and the values map into the model). By default the
    surrogate reads the points inside a TuRBO trust region around the best point, mapped
    onto the unit cube, and the acquisition is climbed inside it (`pfnkit.bo.trust_region`);
    while that box is as wide as the cube, or holds too few points, it reads all of them.
    Points asked but not yet told are put in the context at the surrogate's predicted
    median (the "kriging believer"), so several asks in a row return distinct points.

    Args:
        bounds: one (low, high) pair per dimension.
        n_init: size of the initial design; `default_n_init(d)` when None.
        acquisition: a key of `pfnkit.bo.ACQUISITIONS`: "ei" (expected improvement,
            climbed through its log), "log_ei" (the same), "pi" (probability of
            improvement) or "lcb" (the 10% predictive quantile, minimised).
        checkpoint: regression PFN checkpoint (name, path or loaded). The default,
            `pfnkit.bo.DEFAULT_CHECKPOINT`, is a GP regressor with hyperpriors on
            standardized features; the box maps onto them as `PFNSurrogate` says.
        seed: seeds the design and the acquisition search; the same seed and the same
            told values give the same points.
        device: torch device of the surrogate.
        dtype: torch dtype of the surrogate's model.
        y_transform: how values map into the surrogate's units (`pfnkit.bo.outputs`):
            "power" (default; Yeo-Johnson), "rank" (the Gaussian copula) or
            "standardize".
        config: the acquisition search; `AcquisitionOptimizerConfig()` when None.
        trust_region: True (default) for TuRBO's schedule with its published defaults,
            a `TrustRegionConfig` for another, or False for every step global.
    """

    def __init__(
        self,
        bounds: Sequence[Sequence[float]] | np.ndarray,
        *,
        n_init: int | None = None,
        acquisition: str = "ei",
        checkpoint: str | Path | Checkpoint = DEFAULT_CHECKPOINT,
        seed: int = 0,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        y_transform: str = "power",
        config: AcquisitionOptimizerConfig | None = None,
        trust_region: bool | TrustRegionConfig = True,
    ) -> None:
        self.box = Box.from_bounds(bounds)
        if acquisition not in ACQUISITIONS:
            raise ValueError(f"unknown acquisition {acquisition!r}; known: {sorted(ACQUISITIONS)}")
        n_init = default_n_init(self.box.dim) if n_init is None else n_init
        if isinstance(n_init, bool) or not isinstance(n_init, numbers.Integral) or n_init < 1:
            raise ValueError(f"n_init must be a positive int, got {n_init!r}")
        self.n_init = int(n_init)
        self.acquisition = acquisition
        self.config = config or AcquisitionOptimizerConfig()
        self.surrogate = PFNSurrogate(
            self.box, checkpoint, device=device, dtype=dtype, y_transform=y_transform
        )
        self._generator = torch.Generator().manual_seed(int(seed))
        design_seed = int(torch.randint(2**31 - 1, (1,), generator=self._generator))
        self._design = torch.quasirandom.SobolEngine(self.box.dim, scramble=True, seed=design_seed)
        self._xs: list[np.ndarray] = []
        self._ys: list[float] = []
        self._ask_seconds: list[float] = []
        self._pending: dict[tuple[float, ...], tuple[np.ndarray, float]] = {}
        if not isinstance(trust_region, (bool, TrustRegionConfig)):
            raise TypeError(
                f"trust_region must be a bool or a TrustRegionConfig, got {trust_region!r}"
            )
        region_config = TrustRegionConfig() if trust_region is True else trust_region
        self.trust_region = TrustRegion(region_config, self.box.dim) if region_config else None

    # --------------------------------------------------------------------- the loop
    def ask(self) -> np.ndarray:
        """The next point to evaluate, a (d,) array inside the bounds."""
        start = time.perf_counter()
        if len(self._ys) + len(self._pending) < self.n_init or not self._ys:
            u = self._design.draw(1, dtype=torch.float64)[0].numpy()
            seconds = 0.0
        else:
            u = self._propose()
            seconds = time.perf_counter() - start
        x = self.box.from_unit(u)
        while _key(x) in self._pending:  # a repeated proposal: nudge it by one ulp
            x = np.nextafter(x, self.box.high if bool((x < self.box.high).all()) else self.box.low)
        self._pending[_key(x)] = (x, seconds)
        return x.copy()

    def tell(self, x: Sequence[float] | np.ndarray, y: float) -> None:
        """Record the value `y` of a point `x` that `ask` returned (the same float values).

        Raises:
            ValueError: `x` is not a pending point of `ask` (unknown, or told already), or
                `y` is not a finite number. A rejected value leaves the history as it
                was and the point pending: tell it again with a finite value, or
                `discard` it.
        """
        point = np.asarray(x, dtype=np.float64).reshape(-1)
        key = _key(point)
        if key not in self._pending:
            raise ValueError(
                f"tell got x = {point.tolist()}, which is not a pending point of ask() (unknown, "
                f"or told already); pending: {[list(k) for k in self._pending]}"
            )
        value = _as_finite_value(y, point)
        stored, seconds = self._pending.pop(key)
        if self.trust_region is not None and len(self._ys) >= self.n_init:
            self.trust_region.update(min(self._ys), value)
        self._xs.append(stored)
        self._ys.append(value)
        self._ask_seconds.append(seconds)

    def observe(self, xs: Sequence[Sequence[float]] | np.ndarray, ys: Sequence[float]) -> None:
        """Record evaluations made without `ask` (an earlier run, a design of your own).

        They join the history as if told, in the order given, and count towards the
        initial design: once `n_init` points are known, `ask` proposes by the surrogate.

        Raises:
            ValueError: `xs` is not (n, d), a point lies outside the bounds, `ys` is not
                (n,), or a value is not finite. Nothing is recorded then.
        """
        points = np.asarray(xs, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != self.box.dim:
            raise ValueError(f"xs must have shape (n, {self.box.dim}), got {points.shape}")
        values = np.asarray(ys, dtype=np.float64)
        if values.shape != (points.shape[0],):
            raise ValueError(f"ys must have shape ({points.shape[0]},), got {values.shape}")
        outside = np.flatnonzero(((points < self.box.low) | (points > self.box.high)).any(axis=1))
        if outside.size:
            i = int(outside[0])
            raise ValueError(f"xs[{i}] = {points[i].tolist()} lies outside the bounds")
        checked = [_as_finite_value(y, x) for x, y in zip(points, values, strict=True)]
        self._xs.extend(point.copy() for point in points)
        self._ys.extend(checked)
        self._ask_seconds.extend([0.0] * len(checked))

    def discard(self, x: Sequence[float] | np.ndarray) -> None:
        """Forget a pending point that could not be evaluated (say, `f` returned NaN)."""
        key = _key(np.asarray(x, dtype=np.float64).reshape(-1))
        if self._pending.pop(key, None) is None:
            raise ValueError(f"discard got x = {list(key)}, which is not a pending point of ask()")

    # -------------------------------------------------------------------- results
    @property
    def xs(self) -> np.ndarray:
        return np.array(self._xs).reshape(-1, self.box.dim)

    @property
    def ys(self) -> np.ndarray:
        return np.array(self._ys, dtype=np.float64)

    def result(self) -> OptimizeResult:
        """The history so far and its best point.

        Raises:
            ValueError: nothing has been told yet.
        """
        if not self._ys:
            raise ValueError("no evaluation has been told yet; ask() a point and tell() its value")
        ys = self.ys
        best = int(np.argmin(ys))
        return OptimizeResult(
            xs=self.xs,
            ys=ys,
            x_best=self.xs[best].copy(),
            y_best=float(ys[best]),
            ask_seconds=np.array(self._ask_seconds),
        )

    # -------------------------------------------------------------------- internals
    def _propose(self) -> np.ndarray:
        u_obs, ys = self.box.to_unit(self.xs), self.ys
        pending = [x for x, _ in self._pending.values()]
        u_pending = self.box.to_unit(np.array(pending)) if pending else np.empty((0, self.box.dim))
        region = None if self.trust_region is None else self.trust_region.box(u_obs, ys)
        low, high = region or (np.zeros(self.box.dim), np.ones(self.box.dim))
        if region is not None:  # the points in the box, mapped onto the unit cube
            keep, keep_pending = inside(u_obs, low, high), inside(u_pending, low, high)
            u_obs, ys, u_pending = u_obs[keep], ys[keep], u_pending[keep_pending]
            u_obs, u_pending = (u_obs - low) / (high - low), (u_pending - low) / (high - low)
        surrogate = self.surrogate.fit(u_obs, ys)
        u_ctx = u_obs
        if len(u_pending):  # kriging believer: pending points at their predicted median
            with torch.no_grad():
                median = surrogate.posterior_unit(torch.as_tensor(u_pending)).median
            believed = surrogate.untransform_y(median.double().cpu().numpy())
            u_ctx = np.concatenate([u_obs, u_pending])
            surrogate.fit(u_ctx, np.concatenate([ys, believed]))
        incumbent = torch.tensor(float(surrogate.transform_y(ys.min())), dtype=torch.float64)
        acquisition = ACQUISITIONS[self.acquisition]

        def score(u: torch.Tensor) -> torch.Tensor:
            return acquisition(surrogate.posterior_unit(u), incumbent)

        order = np.argsort(np.concatenate([ys, np.full(len(u_ctx) - len(ys), np.inf)]))
        observed = torch.as_tensor(u_ctx[order], dtype=torch.float64)
        u = maximize_acquisition(score, observed, generator=self._generator, config=self.config)
        u = low + u.detach().cpu().numpy() * (high - low)
        log.debug("proposal %d at u = %s (box %s)", len(self._ys) + 1, u.tolist(), region)
        return np.clip(u, 0.0, 1.0)


def _as_finite_value(y: object, x: np.ndarray) -> float:
    """`y` as a finite float, or a ValueError that names the point."""
    array = np.asarray(y, dtype=np.float64) if _is_number_like(y) else None
    if array is None or array.size != 1:
        raise ValueError(f"the value at x = {x.tolist()} must be one number, got {y!r}")
    value = float(array.reshape(()))
    if not np.isfinite(value):
        raise ValueError(
            f"the value at x = {x.tolist()} is {value}; Bayesian optimisation needs finite "
            "values, and the history is left as it was"
        )
    return value


def _is_number_like(y: object) -> bool:
    try:
        np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return True
