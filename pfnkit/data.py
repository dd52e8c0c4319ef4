"""The task contract between priors and models: `Batch` and the `Prior` protocol."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "MODEL_KINDS",
    "Batch",
    "GPRegressionPrior",
    "LogJointPrior",
    "PretrainPrior",
    "Prior",
    "check_finite",
    "prior_card_data_mapping",
    "prior_model_sizes",
]

MODEL_KINDS = ("pfn", "dt")  # a PFN head, or a Distribution Transformer


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


@runtime_checkable
class LogJointPrior(Prior, Protocol):
    """A prior whose tasks have a finite parameter vector θ and a log-joint for MCMC references.

    One signature for every such prior: S parameter draws of ONE task in, S log densities
    out. It runs in the dtype of ``params_SP`` (use float64 for MCMC) and is differentiable
    in it.
    """

    def log_joint(self, params_SP: Tensor, task: Batch) -> Tensor:
        """log p(θ) + log p(task's context | θ) for each of S draws θ, shape (S,).

        Args:
            params_SP: S parameter vectors of length P (the layout of the prior's
                ``meta`` ground truth).
            task: a one-task `Batch` (batch size 1) holding the context and the meta the
                prior needs (e.g. that task's own mixture prior over θ).
        """
        ...


@runtime_checkable
class GPRegressionPrior(Prior, Protocol):
    """A prior of GP regression tasks: what the GP validators ask of it.

    Tasks have ``d`` used features (the rest zero) and per-task GP hyperparameters that the
    prior either fixes or draws from hyperpriors.
    """

    @property
    def has_hyperpriors(self) -> bool:
        """True when a task's hyperparameters are drawn (the Bayes reference is then NUTS)."""
        ...

    def feature_range(self) -> tuple[int, int]:
        """The fewest and the most used features d a task can have."""
        ...

    def input_range(self) -> tuple[float, float] | None:
        """The interval every input feature is drawn from; None if unbounded (for plots)."""
        ...

    def gp_hyperparameters(self, task: Batch) -> dict[str, Any]:
        """The GP a one-task batch was drawn from, in the units of its x.

        Returns:
            ``kernel`` (str), ``lengthscale`` (float64 tensor, one per feature),
            ``outputscale`` and ``noise`` (floats): the keyword arguments of
            ``pfnkit.reference.exact_gp.GPHyperparameters``.
        """
        ...

    def sample(
        self,
        batch_size: int,
        n_ctx: int,
        n_qry: int,
        *,
        generator: torch.Generator,
        num_used_features: int | None = None,
    ) -> Batch:
        """Draw tasks; ``num_used_features`` fixes d for every task (else d is drawn)."""
        ...


@runtime_checkable
class PretrainPrior(Prior, Protocol):
    """A prior that answers what pretraining on it needs: model input sizes, the card's mapping.

    Both methods are optional for a `Prior`; `prior_model_sizes` and
    `prior_card_data_mapping` call them where they exist and fall back to a documented
    default where they do not.
    """

    def model_sizes(self, kind: str) -> dict[str, int]:
        """The input sizes of a model of `kind` ("pfn" or "dt") trained on this prior.

        A PFN gets ``num_features`` (and ``n_classes`` for a classification head); a
        Distribution Transformer gets ``dim``, ``obs_dim`` and ``k_max``. Raises a
        ValueError for a kind the prior cannot train.
        """
        ...

    def card_data_mapping(self, declared: dict[str, str] | None) -> dict[str, str] | None:
        """The card's data mapping: `declared` checked against the prior and completed.

        Raises a ValueError when `declared` contradicts how the prior presents data.
        """
        ...


def prior_model_sizes(prior: Prior, kind: str) -> dict[str, int]:
    """`prior.model_sizes(kind)`, or the default for a prior without that method.

    The default reads a PFN's ``num_features`` off one sampled task (a regression head);
    a Distribution Transformer gets no sizes, so its config must give them.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"model kind must be one of {MODEL_KINDS}, got {kind!r}")
    if hasattr(prior, "model_sizes"):
        return dict(prior.model_sizes(kind))
    if kind == "dt":
        return {}
    task = prior.sample(1, 1, 1, generator=torch.Generator().manual_seed(0))
    return {"num_features": task.num_features}


def prior_card_data_mapping(prior: Prior, declared: dict[str, str] | None) -> dict[str, str] | None:
    """`prior.card_data_mapping(declared)`, or `declared` unchanged without that method."""
    if hasattr(prior, "card_data_mapping"):
        return prior.card_data_mapping(declared)
    return declared


def check_finite(name: str, tensor: Tensor) -> None:
    """Raise a ValueError naming `name` if `tensor` holds NaN or inf."""
    if not torch.isfinite(tensor).all():
        n_bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(
            f"{name} contains {n_bad} NaN or infinite value(s); remove or impute them first"
        )
