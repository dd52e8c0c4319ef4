"""The search box of an optimisation: validated bounds and the map to the unit cube."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["Box"]


@dataclass(frozen=True)
class Box:
    """An axis-aligned box ``[low_i, high_i]`` and its affine map to ``[0, 1]^d``.

    Attributes:
        low: (d,) lower bounds, float64.
        high: (d,) upper bounds, float64, each strictly above its lower bound.
    """

    low: np.ndarray
    high: np.ndarray

    @classmethod
    def from_bounds(cls, bounds: Sequence[Sequence[float]] | np.ndarray) -> Box:
        """Check `bounds`, one ``(low, high)`` pair per dimension, and build the box.

        Raises:
            ValueError: not a (d, 2) array of finite numbers, d = 0, or a pair whose low
                is not below its high.
        """
        try:
            array = np.asarray(bounds, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"bounds must be (low, high) pairs of numbers: {error}") from None
        if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] == 0:
            raise ValueError(
                "bounds must hold one (low, high) pair per dimension, shape (d, 2), "
                f"got shape {array.shape}; e.g. bounds=[(-5, 10), (0, 15)]"
            )
        if not np.isfinite(array).all():
            raise ValueError(f"bounds must be finite, got {array.tolist()}")
        inverted = np.flatnonzero(array[:, 0] >= array[:, 1])
        if inverted.size:
            i = int(inverted[0])
            raise ValueError(
                f"bounds[{i}] = ({array[i, 0]:g}, {array[i, 1]:g}) has low >= high; each "
                "pair must be (low, high) with low < high"
            )
        return cls(low=array[:, 0].copy(), high=array[:, 1].copy())

    @property
    def dim(self) -> int:
        return int(self.low.shape[0])

    @property
    def width(self) -> np.ndarray:
        return self.high - self.low

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        """(..., d) points in the box to the unit cube."""
        return (np.asarray(x, dtype=np.float64) - self.low) / self.width

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """(..., d) points of the unit cube to the box (clipped onto it against rounding)."""
        x = self.low + np.asarray(u, dtype=np.float64) * self.width
        return np.clip(x, self.low, self.high)

    def to_unit_tensor(self, x: Tensor) -> Tensor:
        """Differentiable `to_unit` for a tensor of points in the box."""
        low = torch.as_tensor(self.low, dtype=x.dtype, device=x.device)
        width = torch.as_tensor(self.width, dtype=x.dtype, device=x.device)
        return (x - low) / width
