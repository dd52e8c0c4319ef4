"""The task contract between priors and models: `Batch` and the `Prior` protocol."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["Batch", "Prior", "check_finite"]


@dataclass(frozen=True)
class Batch:
    """A batch of synthetic (or real) supervised tasks, batch-first.

    Attributes:
        x_ctx: context inputs, shape (B, N, D).
        y_ctx: context targets, shape (B, N).
        x_qry: query inputs, shape (B, M, D).
        y_qry: query targets, shape (B, M).
        meta: per-task ground truth (hyperparameters, θ, ...), each tensor batch-first.
    """

    x_ctx: Tensor
    y_ctx: Tensor
    x_qry: Tensor
    y_qry: Tensor
    meta: Mapping[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.x_ctx.ndim != 3 or self.x_qry.ndim != 3:
            raise ValueError(
                f"x_ctx and x_qry must be (B, N, D) and (B, M, D); got {tuple(self.x_ctx.shape)} "
                f"and {tuple(self.x_qry.shape)}"
            )
        b, n, d = self.x_ctx.shape
        if self.x_qry.shape[0] != b or self.x_qry.shape[2] != d:
            raise ValueError(
                f"x_qry {tuple(self.x_qry.shape)} does not match x_ctx {tuple(self.x_ctx.shape)} "
                "in batch size or feature count"
            )
        if tuple(self.y_ctx.shape) != (b, n):
            raise ValueError(f"y_ctx must have shape {(b, n)}, got {tuple(self.y_ctx.shape)}")
        m = self.x_qry.shape[1]
        if tuple(self.y_qry.shape) != (b, m):
            raise ValueError(f"y_qry must have shape {(b, m)}, got {tuple(self.y_qry.shape)}")
        for key, value in self.meta.items():
            if value.shape[:1] != (b,):
                raise ValueError(f"meta[{key!r}] must be batch-first with B={b}, got {value.shape}")

    @property
    def batch_size(self) -> int:
        return self.x_ctx.shape[0]

    @property
    def n_ctx(self) -> int:
        return self.x_ctx.shape[1]

    @property
    def n_qry(self) -> int:
        return self.x_qry.shape[1]

    @property
    def num_features(self) -> int:
        return self.x_ctx.shape[2]

    def to(self, *args: Any, **kwargs: Any) -> Batch:
        """Move every tensor (meta included) like `Tensor.to`."""
        moved = {
            f.name: getattr(self, f.name).to(*args, **kwargs)
            for f in dataclasses.fields(self)
            if f.name != "meta"
        }
        meta = {k: v.to(*args, **kwargs) for k, v in self.meta.items()}
        return Batch(**moved, meta=meta)

    def task(self, index: int) -> Batch:
        """The single task `index`, keeping a batch dimension of one."""
        sl = slice(index, index + 1)
        return Batch(
            x_ctx=self.x_ctx[sl],
            y_ctx=self.y_ctx[sl],
            x_qry=self.x_qry[sl],
            y_qry=self.y_qry[sl],
            meta={k: v[sl] for k, v in self.meta.items()},
        )


@runtime_checkable
class Prior(Protocol):
    """Anything that draws batches of tasks.

    A prior carries a plain-data ``config`` (a frozen dataclass with ``to_dict``) and a
    ``sample`` method. Randomness comes only from the generator passed in.
    """

    config: Any

    def sample(
        self, batch_size: int, n_ctx: int, n_qry: int, *, generator: torch.Generator
    ) -> Batch: ...


def check_finite(name: str, tensor: Tensor) -> None:
    """Raise a ValueError naming `name` if `tensor` holds NaN or inf."""
    if not torch.isfinite(tensor).all():
        n_bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(
            f"{name} contains {n_bad} NaN or infinite value(s); remove or impute them first"
        )
