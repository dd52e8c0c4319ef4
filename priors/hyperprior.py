"""A scalar hyperparameter of a prior, fixed or drawn per task (used by the GP and BNN priors)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["Hyperprior"]

_FAMILIES = ("fixed", "lognormal", "uniform", "loguniform")


@dataclass(frozen=True, kw_only=True)
class Hyperprior:
    """A scalar hyperparameter: fixed, or drawn per task.

    Attributes:
        family: "fixed" (value ``a``), "lognormal" (log-value ~ N(a, b²)),
            "uniform" (U[a, b]) or "loguniform" (log-value ~ U[log a, log b]).
        a: first parameter (see family).
        b: second parameter (unused for "fixed").
    """

    family: str = "fixed"
    a: float = 1.0
    b: float = 0.0

    def __post_init__(self) -> None:
        if self.family not in _FAMILIES:
            raise ValueError(f"unknown hyperprior family {self.family!r}; choose from {_FAMILIES}")
        if self.family == "fixed" and self.a <= 0:
            raise ValueError(f"a fixed GP hyperparameter must be positive, got {self.a}")
        if self.family == "lognormal" and self.b <= 0:
            raise ValueError(f"lognormal scale b must be positive, got {self.b}")
        if self.family in ("uniform", "loguniform") and not 0 < self.a < self.b:
            raise ValueError(f"{self.family} needs 0 < a < b, got a={self.a}, b={self.b}")

    @classmethod
    def coerce(cls, value: float | dict[str, Any] | Hyperprior) -> Hyperprior:
        """Accept a number (fixed), a dict of fields, or a Hyperprior."""
        if isinstance(value, Hyperprior):
            return value
        if isinstance(value, dict):
            return cls(**value)
        return cls(family="fixed", a=float(value))

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        """Draw float64 values of `shape`."""
        if self.family == "fixed":
            return torch.full(shape, self.a, dtype=torch.float64)
        if self.family == "lognormal":
            z = torch.randn(shape, generator=generator, dtype=torch.float64)
            return torch.exp(self.a + self.b * z)
        u = torch.rand(shape, generator=generator, dtype=torch.float64)
        if self.family == "uniform":
            return self.a + (self.b - self.a) * u
        return torch.exp(math.log(self.a) + (math.log(self.b) - math.log(self.a)) * u)
