"""The test functions of benchmarks/bo.py: BoTorch's synthetic functions with known minima.

Each `Problem` wraps one `botorch.test_functions` function (noise-free, not negated, so
every method minimises it) as a plain ``f(x: (d,) ndarray) -> float`` over its box. The
known minimum is BoTorch's listed value, polished: BoTorch lists some of them rounded
(SixHumpCamel's -1.0316 lies 2.8e-5 above the true minimum), so the listed argmins are
refined with L-BFGS-B inside the box and the lower of the two values is the reference.
Simple regret is then never negative beyond float rounding (it is clipped at 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from botorch.test_functions import synthetic
from scipy.optimize import minimize as scipy_minimize

__all__ = ["PROBLEMS", "SMOKE_PROBLEMS", "Problem", "problems_by_name"]

POLISHED_MINIMUM_TOLERANCE = 1e-3  # a polished minimum may sit this far below the listed one


@dataclass(frozen=True)
class Problem:
    """One benchmark function.

    Attributes:
        name: short name, e.g. "hartmann6".
        make: builds the BoTorch function (noise-free, minimisation).
    """

    name: str
    make: Callable[[], synthetic.SyntheticTestFunction]

    @cached_property
    def function(self) -> synthetic.SyntheticTestFunction:
        return self.make()

    @property
    def dim(self) -> int:
        return int(self.function.dim)

    @property
    def bounds(self) -> np.ndarray:
        """(d, 2) box, one (low, high) pair per dimension."""
        return self.function.bounds.T.double().numpy().copy()

    def __call__(self, x: np.ndarray) -> float:
        x_1D = torch.as_tensor(np.asarray(x, dtype=np.float64)).reshape(1, -1)
        with torch.no_grad():
            return float(self.function(x_1D)[0])

    def evaluate_unit(self, u_nd: np.ndarray) -> np.ndarray:
        """Values at (n, d) points of the unit cube (mapped affinely onto the box)."""
        low, high = self.bounds.T
        x = low + np.asarray(u_nd, dtype=np.float64) * (high - low)
        with torch.no_grad():
            return self.function(torch.as_tensor(x)).numpy().astype(np.float64)

    @cached_property
    def minimum(self) -> float:
        """The known minimum: BoTorch's listed value or its polished argmins, the lower."""
        listed = float(self.function.optimal_value)
        polished = [self._polish(x) for x in self.function.optimizers.double().numpy()]
        best = min([listed, *polished])
        if best < listed - POLISHED_MINIMUM_TOLERANCE * (1 + abs(listed)):
            raise RuntimeError(f"{self.name}: polished minimum {best} far below listed {listed}")
        return best

    def _polish(self, x0: np.ndarray) -> float:
        x0 = np.clip(x0, *self.bounds.T)
        result = scipy_minimize(self, x0, method="L-BFGS-B", bounds=self.bounds, tol=1e-14)
        return float(min(self(x0), result.fun))

    def regret(self, ys: np.ndarray) -> np.ndarray:
        """Simple regret after each evaluation: best-so-far minus the minimum, >= 0."""
        best = np.minimum.accumulate(np.asarray(ys, dtype=np.float64), axis=-1)
        return np.maximum(best - self.minimum, 0.0)


# 10 functions of 2 to 6 dimensions (Surjanovic & Bingham's library, as BoTorch ships it)
PROBLEMS: tuple[Problem, ...] = (
    Problem("branin", lambda: synthetic.Branin()),
    Problem("six_hump_camel", lambda: synthetic.SixHumpCamel()),
    Problem("michalewicz2", lambda: synthetic.Michalewicz(dim=2)),
    Problem("hartmann3", lambda: synthetic.Hartmann(dim=3)),
    Problem("levy4", lambda: synthetic.Levy(dim=4)),
    Problem("rosenbrock4", lambda: synthetic.Rosenbrock(dim=4)),
    Problem("styblinski_tang4", lambda: synthetic.StyblinskiTang(dim=4)),
    Problem("shekel10", lambda: synthetic.Shekel(m=10)),
    Problem("ackley4", lambda: synthetic.Ackley(dim=4)),
    Problem("hartmann6", lambda: synthetic.Hartmann(dim=6)),
)
SMOKE_PROBLEMS = ("branin", "hartmann3")


def problems_by_name(names: str | None) -> list[Problem]:
    """The problems named in a comma-separated list (all when None), in PROBLEMS order."""
    if not names:
        return list(PROBLEMS)
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    known = {problem.name: problem for problem in PROBLEMS}
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise SystemExit(f"unknown functions {unknown}; known: {sorted(known)}")
    return [problem for problem in PROBLEMS if problem.name in wanted]
