"""Parametric learning-curve families of Domhan, Springenberg & Hutter (IJCAI 2015), with priors.

Each family is a saturating curve p(t) of the epoch t ≥ 1 that rises towards an upper
asymptote, written as Domhan et al. write them for accuracy-like performance (LC-PFN,
Adriaensen et al., arXiv 2310.20447, uses the same forms). ``priors.learning_curves_parametric``
mixes them and turns performance into error (1 − p) when asked to.

=========  ========================================  ==================================
family     p(t)                                      parameters (in this order)
=========  ========================================  ==================================
pow3       c − a t^(−α)                              c, a, α
pow4       c − (a t + b)^(−α)                        c, a, b, α
ilog2      c − a / log(t + 1)                        c, a
janoschek  α − (α − β) exp(−κ t^δ)                   α, β, κ, δ
weibull    α − (α − β) exp(−(κ t)^δ)                 α, β, κ, δ
mmf        α − (α − β) / (1 + (κ t)^δ)               α, β, κ, δ
log_power  a / (1 + (t / e^b)^c)                     a, b, c
exp4       c − exp(−a t^α + b)                       c, a, b, α
=========  ========================================  ==================================

The parameter priors are ours (not copied from any implementation): the upper asymptote
is U[0.2, 1] for every family (a final accuracy anywhere from poor to perfect), starting
values and amplitudes are uniform on ranges that put p(1) mostly in [0, 1], and rates and
shapes are log-normal around values that make a typical curve bend within tens of
epochs. The mixture prior rejects curves that leave [0, 1] or do not improve, so these
priors only need to put most of their mass on sensible curves, not all of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution, LogNormal, Normal, Uniform

__all__ = ["FAMILIES", "CurveFamily", "ParamPrior", "StackedParamPriors"]

_KINDS = ("uniform", "lognormal", "normal")
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class ParamPrior:
    """A scalar parameter's prior: U[a, b], LogNormal(a, b) (log-value ~ N(a, b²)) or N(a, b²)."""

    kind: str
    a: float
    b: float

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown parameter prior {self.kind!r}; choose from {_KINDS}")
        if self.kind == "uniform" and not self.a < self.b:
            raise ValueError(f"a uniform prior needs a < b, got {self.a}, {self.b}")
        if self.kind != "uniform" and not self.b > 0:
            raise ValueError(f"a {self.kind} prior needs a positive scale, got {self.b}")

    def distribution(self, like: Tensor | None = None) -> Distribution:
        """The prior as a torch Distribution (its log_prob and support are NUTS's inputs)."""
        kw = {} if like is None else {"dtype": like.dtype, "device": like.device}
        a, b = torch.tensor(self.a, **kw), torch.tensor(self.b, **kw)
        cls = {"uniform": Uniform, "lognormal": LogNormal, "normal": Normal}[self.kind]
        return cls(a, b, validate_args=False)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """n float64 draws from `generator` only."""
        if self.kind == "uniform":
            u = torch.rand(n, generator=generator, dtype=torch.float64)
            return self.a + (self.b - self.a) * u
        z = torch.randn(n, generator=generator, dtype=torch.float64)
        value = self.a + self.b * z
        return torch.exp(value) if self.kind == "lognormal" else value


class StackedParamPriors:
    """Independent scalar priors over the columns of θ (S, Q), their log density in few ops.

    Equal to summing each `ParamPrior`'s torch log_prob, but grouped by kind, so an MCMC
    step pays a handful of tensor operations instead of one Distribution per parameter.
    """

    def __init__(self, priors: Sequence[ParamPrior]) -> None:
        def group(kind: str) -> tuple[Tensor, Tensor, Tensor]:
            index = [i for i, prior in enumerate(priors) if prior.kind == kind]
            a = torch.tensor([priors[i].a for i in index], dtype=torch.float64)
            b = torch.tensor([priors[i].b for i in index], dtype=torch.float64)
            return torch.tensor(index, dtype=torch.long), a, b

        self.uniform, self.lognormal, self.normal = (group(kind) for kind in _KINDS)
        index, a, b = self.uniform
        self._uniform_log_density = float(-torch.log(b - a).sum())

    def log_prob(self, values_SQ: Tensor) -> Tensor:
        """Σ_q log prior_q(θ_q), shape (S,); −inf where a uniform's value leaves its range."""
        index, a, b = (v.to(values_SQ.device) for v in self.uniform)
        x = values_SQ[..., index]
        inside = ((x >= a.to(x)) & (x <= b.to(x))).all(-1)
        uniform_S = torch.full(
            inside.shape, self._uniform_log_density, dtype=values_SQ.dtype, device=values_SQ.device
        )
        total = torch.where(inside, uniform_S, -math.inf)
        index, a, b = self.lognormal
        log_x = values_SQ[..., index].log()
        z = (log_x - a.to(log_x)) / b.to(log_x)
        total = total + (-0.5 * z.square() - b.to(z).log() - _HALF_LOG_2PI - log_x).sum(-1)
        index, a, b = self.normal
        z = (values_SQ[..., index] - a.to(values_SQ)) / b.to(values_SQ)
        total = total + (-0.5 * z.square() - b.to(z).log() - _HALF_LOG_2PI).sum(-1)
        return torch.nan_to_num(total, nan=-math.inf)


def _pow3(p: Tensor, t: Tensor) -> Tensor:
    c, a, alpha = (v[..., None] for v in p.unbind(-1))
    return c - a * t ** (-alpha)


def _pow4(p: Tensor, t: Tensor) -> Tensor:
    c, a, b, alpha = (v[..., None] for v in p.unbind(-1))
    return c - (a * t + b) ** (-alpha)


def _ilog2(p: Tensor, t: Tensor) -> Tensor:
    c, a = (v[..., None] for v in p.unbind(-1))
    return c - a / torch.log(t + 1)


def _janoschek(p: Tensor, t: Tensor) -> Tensor:
    alpha, beta, kappa, delta = (v[..., None] for v in p.unbind(-1))
    return alpha - (alpha - beta) * torch.exp(-kappa * t**delta)


def _weibull(p: Tensor, t: Tensor) -> Tensor:
    alpha, beta, kappa, delta = (v[..., None] for v in p.unbind(-1))
    return alpha - (alpha - beta) * torch.exp(-((kappa * t) ** delta))


def _mmf(p: Tensor, t: Tensor) -> Tensor:
    alpha, beta, kappa, delta = (v[..., None] for v in p.unbind(-1))
    return alpha - (alpha - beta) / (1 + (kappa * t) ** delta)


def _log_power(p: Tensor, t: Tensor) -> Tensor:
    a, b, c = (v[..., None] for v in p.unbind(-1))
    return a / (1 + (t / torch.exp(b)) ** c)


def _exp4(p: Tensor, t: Tensor) -> Tensor:
    c, a, b, alpha = (v[..., None] for v in p.unbind(-1))
    return c - torch.exp(-a * t**alpha + b)


@dataclass(frozen=True)
class CurveFamily:
    """One parametric family: parameter names and priors, and p(t) for S parameter vectors.

    ``curve(params_SP, t_T)`` takes parameters (..., P) and epochs (T,) and returns (..., T).
    """

    name: str
    params: tuple[str, ...]
    priors: tuple[ParamPrior, ...]
    curve: Callable[[Tensor, Tensor], Tensor]

    @property
    def num_params(self) -> int:
        return len(self.params)

    def sample_params(self, n: int, generator: torch.Generator) -> Tensor:
        """n parameter vectors (n, P), float64."""
        return torch.stack([prior.sample(n, generator) for prior in self.priors], dim=-1)

    def log_prior(self, params_SP: Tensor) -> Tensor:
        """Σ_p log prior(θ_p), shape (S,); −inf outside a uniform's range."""
        terms = [
            prior.distribution(params_SP).log_prob(params_SP[..., i])
            for i, prior in enumerate(self.priors)
        ]
        total = torch.stack(terms, -1).sum(-1)
        return torch.nan_to_num(total, nan=-math.inf)


_ASYMPTOTE = ParamPrior("uniform", 0.2, 1.0)
_START = ParamPrior("uniform", 0.0, 1.0)

FAMILIES: dict[str, CurveFamily] = {
    family.name: family
    for family in [
        CurveFamily(
            "pow3",
            ("c", "a", "alpha"),
            (_ASYMPTOTE, ParamPrior("uniform", 0.0, 0.8), ParamPrior("lognormal", -0.5, 0.8)),
            _pow3,
        ),  # fmt: skip
        CurveFamily(
            "pow4",
            ("c", "a", "b", "alpha"),
            (
                _ASYMPTOTE,
                ParamPrior("lognormal", -2.0, 1.0),
                ParamPrior("lognormal", 0.5, 0.5),
                ParamPrior("lognormal", 0.0, 0.7),
            ),
            _pow4,
        ),  # fmt: skip
        CurveFamily(
            "ilog2", ("c", "a"), (_ASYMPTOTE, ParamPrior("uniform", 0.0, 0.5)), _ilog2
        ),  # fmt: skip
        CurveFamily(
            "janoschek",
            ("alpha", "beta", "kappa", "delta"),
            (
                _ASYMPTOTE,
                _START,
                ParamPrior("lognormal", -2.0, 1.0),
                ParamPrior("lognormal", 0.0, 0.5),
            ),
            _janoschek,
        ),  # fmt: skip
        CurveFamily(
            "weibull",
            ("alpha", "beta", "kappa", "delta"),
            (
                _ASYMPTOTE,
                _START,
                ParamPrior("lognormal", -2.5, 1.0),
                ParamPrior("lognormal", 0.0, 0.5),
            ),
            _weibull,
        ),  # fmt: skip
        CurveFamily(
            "mmf",
            ("alpha", "beta", "kappa", "delta"),
            (
                _ASYMPTOTE,
                _START,
                ParamPrior("lognormal", -1.5, 1.0),
                ParamPrior("lognormal", 0.0, 0.5),
            ),
            _mmf,
        ),  # fmt: skip
        CurveFamily(
            "log_power",
            ("a", "b", "c"),
            (_ASYMPTOTE, ParamPrior("normal", 1.0, 1.0), ParamPrior("uniform", -3.0, 0.0)),
            _log_power,
        ),  # fmt: skip
        CurveFamily(
            "exp4",
            ("c", "a", "b", "alpha"),
            (
                _ASYMPTOTE,
                ParamPrior("lognormal", -2.0, 1.0),
                ParamPrior("uniform", -3.0, 0.0),
                ParamPrior("lognormal", 0.0, 0.5),
            ),
            _exp4,
        ),  # fmt: skip
    ]
}
