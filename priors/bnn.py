"""Bayesian-neural-network prior over functions: a random MLP with fresh weights per task.

Each task draws the weights and biases of a multilayer perceptron f: R^D → R^O from
independent zero-mean Gaussians, inputs x from N(0, I_D) or a uniform box, and targets
from a likelihood on f(x): Gaussian noise (regression), a softmax categorical over C
classes, or a sigmoid Bernoulli on a single logit (binary classification). A PFN trained
on these tasks approximates the BNN posterior predictive (Müller et al., arXiv 2112.10510).

``meta["weights"]`` and the ``params_SP`` that the log densities take use the flat
parameter layout of `priors.mlp` (per layer, the weight matrix row-major, then the bias).

Hyperprior mode draws the depth once per `BNNPrior.sample` call (shared by the batch)
and one hidden width per task. Tasks are padded to ``width_max`` units per hidden layer;
the weights into and out of a task's unused units, and their biases, are exactly zero,
so the padded network computes the same function as the narrow one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Bernoulli, Categorical, Distribution, Normal

from pfnkit.data import Batch
from priors.hyperprior import Hyperprior
from priors.mlp import (
    ACTIVATIONS,
    mlp_forward,
    mlp_layer_sizes,
    n_mlp_parameters,
    parameter_stds,
    unflatten_parameters,
)

# ACTIVATIONS and the MLP functions live in priors.mlp; they are re-exported here.
__all__ = [
    "ACTIVATIONS",
    "MODES",
    "OUTPUT_TYPES",
    "X_DISTS",
    "BNNPrior",
    "BNNPriorConfig",
    "mlp_forward",
    "mlp_layer_sizes",
    "n_mlp_parameters",
    "unflatten_parameters",
]

MODES: tuple[str, ...] = ("fixed", "hyperprior")
OUTPUT_TYPES: tuple[str, ...] = ("regression", "classification")
X_DISTS: tuple[str, ...] = ("normal", "uniform")
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_STD_FIELDS = ("weight_std", "bias_std", "noise_std")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class BNNPriorConfig:
    """Tasks from a random MLP: x ~ p(x), weights ~ N(0, σ²), y ~ p(y | f(x)).

    Attributes:
        num_features: input dimension D.
        mode: "fixed" (one architecture and fixed standard deviations: the setting of
            the exact NUTS reference) or "hyperprior" (random depth and width, and
            standard deviations drawn per task from their hyperpriors).
        depth: hidden layers in fixed mode (0 gives a linear model).
        width: units per hidden layer in fixed mode.
        depth_min: fewest hidden layers in hyperprior mode; the depth is drawn uniformly
            from [depth_min, depth_max] once per `BNNPrior.sample` call.
        depth_max: see depth_min.
        width_min: fewest units per hidden layer in hyperprior mode; each task draws one
            width uniformly from [width_min, width_max], used by all its hidden layers.
        width_max: see width_min.
        activation: one of "tanh", "relu", "gelu", "sin", "identity".
        weight_std: prior standard deviation of every weight. A number, or a
            `Hyperprior` (or its dict) drawn per task; fixed mode needs a fixed one.
        bias_std: prior standard deviation of every bias; like weight_std.
        noise_std: standard deviation of the Gaussian noise of "regression" targets;
            like weight_std. Unused for classification.
        x_dist: "normal" (x ~ N(0, I_D)) or "uniform" (x ~ U[x_low, x_high]^D).
        x_low: lower bound of the uniform input box.
        x_high: upper bound of the uniform input box.
        output: "regression" (y = f(x) + ε, one output) or "classification"
            (y ~ Categorical(softmax(f(x))), n_classes outputs; labels stored as floats).
        n_classes: number of classes C for classification.
        binary_logit: for C = 2 only: the network has one output and
            y ~ Bernoulli(sigmoid(f(x))).
    """

    num_features: int = 2
    mode: str = "fixed"
    depth: int = 1
    width: int = 8
    depth_min: int = 1
    depth_max: int = 2
    width_min: int = 4
    width_max: int = 16
    activation: str = "tanh"
    weight_std: Hyperprior | float = Hyperprior(a=1.0)
    bias_std: Hyperprior | float = Hyperprior(a=1.0)
    noise_std: Hyperprior | float = Hyperprior(a=0.1)
    x_dist: str = "normal"
    x_low: float = -1.0
    x_high: float = 1.0
    output: str = "regression"
    n_classes: int = 2
    binary_logit: bool = False

    def __post_init__(self) -> None:
        for name, minimum in (
            ("num_features", 1),
            ("depth", 0),
            ("width", 1),
            ("depth_min", 0),
            ("depth_max", self.depth_min),
            ("width_min", 1),
            ("width_max", self.width_min),
            ("n_classes", 2),
        ):
            _check_int(name, getattr(self, name), minimum)
        for name, choices in (
            ("mode", MODES),
            ("activation", ACTIVATIONS),
            ("x_dist", X_DISTS),
            ("output", OUTPUT_TYPES),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose from {choices}")
        if not (math.isfinite(self.x_low) and math.isfinite(self.x_high)) or (
            self.x_low >= self.x_high
        ):
            raise ValueError(f"need finite x_low < x_high, got {self.x_low}, {self.x_high}")
        object.__setattr__(self, "x_low", float(self.x_low))
        object.__setattr__(self, "x_high", float(self.x_high))
        if not isinstance(self.binary_logit, bool):
            raise ValueError(f"binary_logit must be true or false, got {self.binary_logit!r}")
        if self.binary_logit and (self.output != "classification" or self.n_classes != 2):
            raise ValueError(
                "binary_logit needs output='classification' and n_classes=2, got "
                f"output={self.output!r}, n_classes={self.n_classes}"
            )
        for name in _STD_FIELDS:
            hyper = Hyperprior.coerce(getattr(self, name))
            if self.mode == "fixed" and hyper.family != "fixed":
                raise ValueError(
                    f"mode='fixed' needs a fixed {name} (a number), got a {hyper.family!r} "
                    "hyperprior; use mode='hyperprior' to draw it per task"
                )
            object.__setattr__(self, name, hyper)

    @property
    def n_outputs(self) -> int:
        """Outputs O of the network: 1 (regression, binary_logit) or n_classes."""
        if self.output == "regression" or self.binary_logit:
            return 1
        return self.n_classes

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """(D, width, ..., width, O) of the fixed architecture (fixed mode only)."""
        if self.mode != "fixed":
            raise ValueError("layer_sizes is defined only for mode='fixed'")
        return mlp_layer_sizes(self.num_features, (self.width,) * self.depth, self.n_outputs)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON and TOML (hyperpriors as dicts)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BNNPriorConfig:
        """Inverse of `to_dict`."""
        return cls(**data)


class BNNPrior:
    """Batched sampler of BNN tasks, with a log-joint and predictive for NUTS references.

    `sample` returns ``meta`` with "weights" (B, P), the flat parameters (zero-padded to
    ``width_max`` in hyperprior mode); "noise_std" (B,) for regression; and in hyperprior
    mode "depth", "width", "weight_std", "bias_std" (B,) each.

    The log densities and `predictive` describe ONE task's data under the fixed
    architecture. They run in the dtype of ``params_SP`` (use float64 for MCMC), are
    differentiable in it, and take a batch of S parameter vectors (S, P); a single
    vector (P,) gives results without the leading S axis.
    """

    def __init__(self, config: BNNPriorConfig | None = None) -> None:
        self.config = config or BNNPriorConfig()
        cfg = self.config
        if cfg.mode == "fixed":
            width_1, weight_std_1, bias_std_1 = (
                torch.tensor([value], dtype=torch.float64)
                for value in (cfg.width, cfg.weight_std.a, cfg.bias_std.a)
            )
            sizes = cfg.layer_sizes
            self._prior_std_P = parameter_stds(sizes, width_1, weight_std_1, bias_std_1)[0]

    @property
    def n_parameters(self) -> int:
        """Length P of the flat parameter vector (fixed mode only)."""
        return n_mlp_parameters(self.config.layer_sizes)

    def unflatten(self, params_SP: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per-layer (weight (S, I, O), bias (S, O)) of the fixed architecture."""
        return unflatten_parameters(params_SP, self.config.layer_sizes)

    def forward_fn(self, params_SP: Tensor, x_ND: Tensor) -> Tensor:
        """Network outputs f (S, N, O) at inputs (N, D); (N, O) for a single (P,) vector."""
        params_SP, single = (params_SP[None], True) if params_SP.ndim == 1 else (params_SP, False)
        f_SNO = mlp_forward(self.unflatten(params_SP), x_ND, self.config.activation)
        return f_SNO[0] if single else f_SNO

    def log_prior(self, params_SP: Tensor) -> Tensor:
        """log p(params) under the independent Gaussian prior; shape (S,)."""
        if params_SP.shape[-1] != self.n_parameters:
            raise ValueError(
                f"expected {self.n_parameters} parameters, got {tuple(params_SP.shape)}"
            )
        std_P = self._prior_std_P.to(params_SP)
        z_SP = params_SP / std_P
        return (-0.5 * z_SP.pow(2) - std_P.log() - _HALF_LOG_2PI).sum(-1)

    def log_likelihood(self, params_SP: Tensor, x_ND: Tensor, y_N: Tensor) -> Tensor:
        """log p(y_1..N | x, params) summed over the N points; shape (S,), zeros if N = 0."""
        cfg = self.config
        if x_ND.ndim != 2 or y_N.shape != x_ND.shape[:1]:
            raise ValueError(
                f"expected x (N, D) and y (N,), got {tuple(x_ND.shape)} and {tuple(y_N.shape)}"
            )
        f_SNO = self.forward_fn(params_SP, x_ND)
        y_N = y_N.to(f_SNO)
        if cfg.output == "regression":
            std = cfg.noise_std.a
            resid_SN = (y_N - f_SNO[..., 0]) / std
            return (-0.5 * resid_SN.pow(2) - math.log(std) - _HALF_LOG_2PI).sum(-1)
        _check_labels(y_N, cfg.n_classes)
        if cfg.binary_logit:
            logit_SN = f_SNO[..., 0]
            # log sigmoid(l) for y = 1 and log sigmoid(-l) for y = 0.
            return (y_N * logit_SN - F.softplus(logit_SN)).sum(-1)
        log_p_SNC = torch.log_softmax(f_SNO, dim=-1)
        label_SN1 = y_N.long().expand(log_p_SNC.shape[:-1]).unsqueeze(-1)
        return log_p_SNC.gather(-1, label_SN1).squeeze(-1).sum(-1)

    def log_joint(self, params_SP: Tensor, task: Batch) -> Tensor:
        """log p(params) + log p(y | x, params) of a one-task batch's context; shape (S,)."""
        if task.batch_size != 1:
            raise ValueError(f"log_joint takes a one-task batch, got {task.batch_size} tasks")
        x_ND, y_N = task.x_ctx[0].to(params_SP), task.y_ctx[0].to(params_SP)
        return self.log_prior(params_SP) + self.log_likelihood(params_SP, x_ND, y_N)

    @property
    def is_fixed_classifier(self) -> bool:
        """One fixed architecture and a class likelihood: the NUTS reference's setting."""
        return self.config.mode == "fixed" and self.config.output == "classification"

    def predictive(self, params_SP: Tensor, x_MD: Tensor) -> Distribution:
        """p(y | x, params) at M inputs, batch shape (S, M): Normal, Bernoulli or Categorical."""
        cfg = self.config
        f_SMO = self.forward_fn(params_SP, x_MD)
        # torch.distributions cannot validate parameters with zero elements.
        validate = None if x_MD.shape[0] > 0 else False
        if cfg.output == "regression":
            return Normal(f_SMO[..., 0], cfg.noise_std.a, validate_args=validate)
        if cfg.binary_logit:
            return Bernoulli(logits=f_SMO[..., 0], validate_args=validate)
        return Categorical(logits=f_SMO, validate_args=validate)

    def model_sizes(self, kind: str) -> dict[str, int]:
        """A PFN's input width, and its head's class count for classification."""
        if kind != "pfn":
            raise ValueError(f"a BNN prior trains a PFN ([model] kind = 'pfn'), not {kind!r}")
        if self.config.output == "classification":
            return {"num_features": self.config.num_features, "n_classes": self.config.n_classes}
        return {"num_features": self.config.num_features}

    def card_data_mapping(self, declared: dict[str, str] | None) -> dict[str, str] | None:
        """`declared` unchanged: the BNN prior presents data in no special way."""
        return declared

    def sample(
        self,
        batch_size: int,
        n_ctx: int,
        n_qry: int,
        *,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
    ) -> Batch:
        """Draw `batch_size` tasks with `n_ctx` context and `n_qry` query points each.

        Sampling runs in float64; every returned tensor has `dtype`. Classification
        labels are stored as floats 0., 1., ..., C - 1.
        """
        if batch_size < 1 or n_ctx < 0 or n_qry < 0:
            raise ValueError(
                f"need batch_size >= 1, n_ctx >= 0 and n_qry >= 0, got {batch_size}, "
                f"{n_ctx}, {n_qry}"
            )
        cfg = self.config
        depth, width_B = self._draw_architecture(batch_size, generator)
        hyper = {
            name: getattr(cfg, name).sample((batch_size,), generator) for name in _STD_FIELDS[:2]
        }
        if cfg.output == "regression":
            hyper["noise_std"] = cfg.noise_std.sample((batch_size,), generator)
        padded = cfg.width if cfg.mode == "fixed" else cfg.width_max
        sizes = mlp_layer_sizes(cfg.num_features, (padded,) * depth, cfg.n_outputs)
        std_BP = parameter_stds(sizes, width_B, hyper["weight_std"], hyper["bias_std"])
        params_BP = std_BP * torch.randn(std_BP.shape, generator=generator, dtype=torch.float64)
        x_BTD = self._draw_inputs(batch_size, n_ctx + n_qry, generator)
        f_BTO = mlp_forward(unflatten_parameters(params_BP, sizes), x_BTD, cfg.activation)
        y_BT = self._draw_targets(f_BTO, hyper.get("noise_std"), generator)
        meta = {"weights": params_BP}
        if cfg.output == "regression":
            meta["noise_std"] = hyper["noise_std"]
        if cfg.mode == "hyperprior":
            meta.update(hyper, depth=torch.full((batch_size,), float(depth)), width=width_B)
        return Batch(
            x_ctx=x_BTD[:, :n_ctx].to(dtype),
            y_ctx=y_BT[:, :n_ctx].to(dtype),
            x_qry=x_BTD[:, n_ctx:].to(dtype),
            y_qry=y_BT[:, n_ctx:].to(dtype),
            meta={k: v.to(dtype) for k, v in meta.items()},
        )

    def _draw_architecture(self, batch_size: int, generator: torch.Generator) -> tuple[int, Tensor]:
        """The depth shared by the batch and each task's hidden width (B,), float64."""
        cfg = self.config
        if cfg.mode == "fixed":
            return cfg.depth, torch.full((batch_size,), float(cfg.width), dtype=torch.float64)
        depth = int(torch.randint(cfg.depth_min, cfg.depth_max + 1, (1,), generator=generator))
        width_B = torch.randint(
            cfg.width_min, cfg.width_max + 1, (batch_size,), generator=generator
        )
        return depth, width_B.to(torch.float64)

    def _draw_inputs(self, batch_size: int, n_points: int, generator: torch.Generator) -> Tensor:
        """Inputs (B, T, D), float64, from N(0, I) or the uniform box."""
        cfg = self.config
        shape = (batch_size, n_points, cfg.num_features)
        if cfg.x_dist == "normal":
            return torch.randn(shape, generator=generator, dtype=torch.float64)
        u_BTD = torch.rand(shape, generator=generator, dtype=torch.float64)
        return cfg.x_low + (cfg.x_high - cfg.x_low) * u_BTD

    def _draw_targets(
        self, f_BTO: Tensor, noise_std_B: Tensor | None, generator: torch.Generator
    ) -> Tensor:
        """Targets (B, T): noisy f, or class labels as floats, from the likelihood."""
        cfg = self.config
        if cfg.output == "regression":
            noise_BT = torch.randn(f_BTO.shape[:2], generator=generator, dtype=f_BTO.dtype)
            return f_BTO[..., 0] + noise_std_B[:, None] * noise_BT
        u_BT = torch.rand(f_BTO.shape[:2], generator=generator, dtype=f_BTO.dtype)
        if cfg.binary_logit:
            return (u_BT < torch.sigmoid(f_BTO[..., 0])).to(f_BTO.dtype)
        # Inverse CDF: the label is the number of cumulative probabilities below u.
        cdf_BTC = torch.softmax(f_BTO, dim=-1).cumsum(-1)
        labels_BT = (cdf_BTC < u_BT.unsqueeze(-1)).sum(-1).clamp_max(cfg.n_classes - 1)
        return labels_BT.to(f_BTO.dtype)


def _check_labels(y_N: Tensor, n_classes: int) -> None:
    """Raise a ValueError unless every label is an integer in [0, n_classes)."""
    valid = (y_N == y_N.round()) & (y_N >= 0) & (y_N < n_classes)
    if not bool(valid.all()):
        raise ValueError(
            f"classification labels must be integers in [0, {n_classes}) stored as floats; "
            f"got {int((~valid).sum())} invalid value(s)"
        )
