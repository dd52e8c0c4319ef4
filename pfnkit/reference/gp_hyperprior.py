"""GP hyperpriors from a checkpoint card's plain-data prior config, as log densities for NUTS.

pfnkit never imports ``priors``, so this module reads the card's ``prior_config`` (the
output of ``GPPriorConfig.to_dict``) as plain data and evaluates the hyperprior densities
on its own. It shares no code with the sampler in ``priors/gp.py``: agreement between
the two (tests draw from one and score with the other) means something.

Every free hyperparameter v > 0 is sampled by NUTS on an unconstrained φ ∈ ℝ:

* lognormal(a, b): log v ~ N(a, b²); v = exp(φ).
* loguniform(a, b): log v ~ U[log a, log b]; log v = log a + (log b − log a) σ(φ).
* uniform(a, b): v ~ U[a, b]; v = a + (b − a) σ(φ).

σ is the logistic function, so the bounded families have no hard walls for the sampler.
The density of φ includes the Jacobian |dv/dφ| of that map. "fixed" hyperparameters are
not sampled.

Units: a task with d used features sees lengthscales ℓ = ``lengthscale_factor`` · ℓ_draw
in the units of the model's x, where the factor is √d under
``lengthscale_scaling = "sqrt"`` times √(D / d) under ``feature_rescale = "sqrt"``
(see the module docstring of ``priors/gp.py``; here the rule is re-derived from the card).

Linear part (a card whose ``linear_weight`` is not null): each used feature j has its own
λ_j ~ ``linear_weight``, sampled by NUTS like the lengthscales, and f gains z·β with
β_j ~ N(0, σ_f² λ_j / d) over the inputs z before ``feature_rescale``. The model sees
x = s z on the used features (s² = D / d under ``feature_rescale = "sqrt"``, else 1), so
z·β = Σ_j x_j β_j / s and the covariance gains Σ_j v_j x_j x'_j with

    v_j = σ_f² λ_j · ``linear_factor``,   linear_factor = 1 / (d s²)

(1 / D under the sqrt rescale, 1 / d without it). ``lengthscale_scaling`` does not touch it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.nn.functional import logsigmoid

from pfnkit.reference.exact_gp import KERNELS, GPHyperparameters
from pfnkit.reference.gp_cholesky import LinearGPHyperparameters

__all__ = ["FAMILIES", "GPHyperprior", "ScalarHyperprior"]

FAMILIES = ("fixed", "lognormal", "uniform", "loguniform")
_SCALINGS = ("none", "sqrt")
_DTYPE = torch.float64
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True, kw_only=True)
class ScalarHyperprior:
    """The prior of one positive GP hyperparameter v.

    Attributes:
        family: "fixed" (v = a), "lognormal" (log v ~ N(a, b²)), "uniform" (v ~ U[a, b])
            or "loguniform" (log v ~ U[log a, log b]).
        a: first parameter.
        b: second parameter (unused for "fixed").
    """

    family: str
    a: float
    b: float = 0.0

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown hyperprior family {self.family!r}; choose from {FAMILIES}")
        if self.family == "fixed" and not self.a > 0:
            raise ValueError(f"a fixed hyperparameter must be positive, got {self.a}")
        if self.family == "lognormal" and not self.b > 0:
            raise ValueError(f"lognormal scale b must be positive, got {self.b}")
        if self.family in ("uniform", "loguniform") and not 0 < self.a < self.b:
            raise ValueError(f"{self.family} needs 0 < a < b, got a={self.a}, b={self.b}")

    @classmethod
    def from_plain(cls, value: float | Mapping[str, Any]) -> ScalarHyperprior:
        """Read a card entry: a number (fixed) or a mapping with family, a and b."""
        if isinstance(value, Mapping):
            return cls(family=value["family"], a=float(value["a"]), b=float(value.get("b", 0.0)))
        return cls(family="fixed", a=float(value))

    @property
    def free(self) -> bool:
        """True when the hyperparameter is drawn (sampled by NUTS), not fixed."""
        return self.family != "fixed"

    def _bounds(self) -> tuple[float, float]:
        """Support of the sampled quantity: log v (loguniform) or v (uniform)."""
        if self.family == "loguniform":
            return math.log(self.a), math.log(self.b)
        return self.a, self.b

    def log_prob(self, value: Tensor) -> Tensor:
        """Log density of v (not of log v); -inf outside the support."""
        value = torch.as_tensor(value, dtype=_DTYPE)
        if self.family == "fixed":
            raise ValueError("a fixed hyperparameter has no density; it is not sampled")
        log_v = value.log()
        if self.family == "lognormal":
            z = (log_v - self.a) / self.b
            return -0.5 * z**2 - math.log(self.b) - _LOG_SQRT_2PI - log_v
        inside = (value >= self.a) & (value <= self.b)
        if self.family == "uniform":
            density = torch.full_like(value, -math.log(self.b - self.a))
        else:
            low, high = self._bounds()
            density = -log_v - math.log(high - low)
        return torch.where(inside, density, -math.inf)

    def to_value(self, phi: Tensor) -> Tensor:
        """Map unconstrained φ to v (see the module docstring)."""
        if self.family == "lognormal":
            return phi.exp()
        if self.family == "fixed":
            return torch.full_like(phi, self.a)
        low, high = self._bounds()
        inner = (low + (high - low) * torch.sigmoid(phi)).clamp(low, high)
        return inner.exp() if self.family == "loguniform" else inner

    def to_unconstrained(self, value: Tensor) -> Tensor:
        """Inverse of `to_value`: φ for v inside the support."""
        value = torch.as_tensor(value, dtype=_DTYPE)
        if self.family == "lognormal":
            return value.log()
        if self.family == "fixed":
            raise ValueError("a fixed hyperparameter has no unconstrained coordinate")
        low, high = self._bounds()
        inner = value.log() if self.family == "loguniform" else value
        return torch.logit((inner - low) / (high - low))

    def log_abs_det_jacobian(self, phi: Tensor) -> Tensor:
        """log |dv/dφ| of `to_value`."""
        if self.family == "lognormal":
            return phi
        low, high = self._bounds()
        log_dinner = math.log(high - low) + logsigmoid(phi) + logsigmoid(-phi)
        if self.family == "loguniform":
            return log_dinner + self.to_value(phi).log()
        return log_dinner

    def log_prob_unconstrained(self, phi: Tensor) -> Tensor:
        """Log density of φ, i.e. ``log_prob(to_value(φ)) + log_abs_det_jacobian(φ)``.

        Evaluated in closed form (finite for every φ, also where v rounds onto a bound):
        N(φ; a, b²) for lognormal, the logistic density log σ(φ) + log σ(−φ) for the
        bounded families.
        """
        if self.family == "lognormal":
            z = (phi - self.a) / self.b
            return -0.5 * z**2 - math.log(self.b) - _LOG_SQRT_2PI
        if self.family == "fixed":
            raise ValueError("a fixed hyperparameter has no density; it is not sampled")
        return logsigmoid(phi) + logsigmoid(-phi)

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        """Draw values v of `shape` (float64)."""
        if self.family == "fixed":
            return torch.full(shape, self.a, dtype=_DTYPE)
        if self.family == "lognormal":
            z = torch.randn(shape, generator=generator, dtype=_DTYPE)
            return (self.a + self.b * z).exp()
        low, high = self._bounds()
        inner = low + (high - low) * torch.rand(shape, generator=generator, dtype=_DTYPE)
        return inner.exp() if self.family == "loguniform" else inner


def _scaling(prior_config: Mapping[str, Any], key: str) -> str:
    value = prior_config.get(key, "none")  # cards written before the key existed: no scaling
    if value not in _SCALINGS:
        raise ValueError(f"prior_config[{key!r}]={value!r}; known: {_SCALINGS}")
    return value


def _unit_factors(prior_config: Mapping[str, Any], d: int, total: int) -> dict[str, float]:
    """lengthscale_factor and linear_factor of a task with d of D = total used features."""
    lengthscale_factor, rescale_squared = 1.0, 1.0
    if _scaling(prior_config, "lengthscale_scaling") == "sqrt":
        lengthscale_factor *= math.sqrt(d)
    if _scaling(prior_config, "feature_rescale") == "sqrt":
        lengthscale_factor *= math.sqrt(total / d)
        rescale_squared = total / d
    return {"lengthscale_factor": lengthscale_factor, "linear_factor": 1.0 / (d * rescale_squared)}


@dataclass(frozen=True, kw_only=True)
class GPHyperprior:
    """Joint hyperprior of one task's GP on its d used features, in the model's x units.

    φ orders the free hyperparameters as lengthscales, outputscale, noise, linear weights.

    Attributes:
        kernel: one of ``KERNELS``.
        lengthscale: one prior per used feature, over the drawn (unscaled) lengthscale.
        outputscale: prior of the kernel variance.
        noise: prior of the observation-noise variance.
        lengthscale_factor: model-unit lengthscale = factor × drawn lengthscale.
        linear_weight: one prior of λ_j per used feature, or () for no linear part.
        linear_factor: the linear weight variance v_j = σ_f² λ_j × factor (model units).
    """

    kernel: str
    lengthscale: tuple[ScalarHyperprior, ...]
    outputscale: ScalarHyperprior
    noise: ScalarHyperprior
    lengthscale_factor: float = 1.0
    linear_weight: tuple[ScalarHyperprior, ...] = ()
    linear_factor: float = 1.0

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(f"unknown kernel {self.kernel!r}; choose one of {KERNELS}")
        if not self.lengthscale:
            raise ValueError("need at least one lengthscale prior (one per used feature)")
        if not self.lengthscale_factor > 0:
            raise ValueError(f"lengthscale_factor must be positive, got {self.lengthscale_factor}")
        object.__setattr__(self, "lengthscale", tuple(self.lengthscale))
        object.__setattr__(self, "linear_weight", tuple(self.linear_weight))
        if self.linear_weight and len(self.linear_weight) != len(self.lengthscale):
            raise ValueError(
                f"got {len(self.linear_weight)} linear weight priors for "
                f"{len(self.lengthscale)} used features; pass one per feature, or none"
            )
        if not self.linear_factor > 0:
            raise ValueError(f"linear_factor must be positive, got {self.linear_factor}")

    @classmethod
    def from_prior_config(
        cls, prior_config: Mapping[str, Any], num_used_features: int | None = None
    ) -> GPHyperprior:
        """The hyperprior of a task with d = ``num_used_features`` (default: all features).

        Args:
            prior_config: a card's ``prior_config`` for ``prior_name = "gp"``: kernel,
                num_features, lengthscale (a list of per-feature entries, or one entry),
                outputscale and noise, plus the optional num_features_min,
                lengthscale_scaling, feature_rescale and linear_weight (one entry, which
                every used feature draws its own λ_j from; absent or None: no linear part).
            num_used_features: d, within [num_features_min, num_features].
        """
        missing = {"kernel", "num_features", "lengthscale", "outputscale", "noise"}
        missing -= set(prior_config)
        if missing:
            raise ValueError(
                f"prior_config lacks {sorted(missing)}; pass a GP card's full prior_config"
            )
        total = int(prior_config["num_features"])
        d_min = prior_config.get("num_features_min") or total
        d = total if num_used_features is None else int(num_used_features)
        if not d_min <= d <= total:
            raise ValueError(
                f"num_used_features={d} lies outside the prior's range [{d_min}, {total}]"
            )
        raw = prior_config["lengthscale"]
        entries = list(raw) if isinstance(raw, (list, tuple)) else [raw] * total
        if len(entries) != total:
            raise ValueError(f"got {len(entries)} lengthscale entries for num_features={total}")
        linear = prior_config.get("linear_weight")  # absent (older cards) or None: no part
        return cls(
            kernel=prior_config["kernel"],
            lengthscale=tuple(ScalarHyperprior.from_plain(e) for e in entries[:d]),
            outputscale=ScalarHyperprior.from_plain(prior_config["outputscale"]),
            noise=ScalarHyperprior.from_plain(prior_config["noise"]),
            **_unit_factors(prior_config, d, total),
            linear_weight=() if linear is None else (ScalarHyperprior.from_plain(linear),) * d,
        )

    @property
    def num_features(self) -> int:
        return len(self.lengthscale)

    @property
    def has_linear(self) -> bool:
        """True when the GP has the linear part Σ_j v_j x_j x'_j."""
        return bool(self.linear_weight)

    @property
    def _all(self) -> tuple[ScalarHyperprior, ...]:
        return (*self.lengthscale, self.outputscale, self.noise, *self.linear_weight)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Names of the free (sampled) hyperparameters, in the order of φ."""
        names = [f"lengthscale[{j}]" for j in range(self.num_features)]
        names += ["outputscale", "noise"]
        names += [f"linear_weight[{j}]" for j in range(len(self.linear_weight))]
        return tuple(n for n, h in zip(names, self._all, strict=True) if h.free)

    @property
    def num_parameters(self) -> int:
        """Length P of the unconstrained vector φ."""
        return sum(h.free for h in self._all)

    def _values(self, phi_P: Tensor) -> list[Tensor]:
        """Every hyperparameter's value (drawn units), fixed ones filled in."""
        if phi_P.shape != (self.num_parameters,):
            raise ValueError(
                f"phi must have shape ({self.num_parameters},), got {tuple(phi_P.shape)}"
            )
        values, k = [], 0
        for h in self._all:
            if h.free:
                values.append(h.to_value(phi_P[k]))
                k += 1
            else:
                values.append(torch.tensor(h.a, dtype=_DTYPE, device=phi_P.device))
        return values

    def unpack(self, phi_P: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """(lengthscale_d, outputscale, noise, linear_variance_d) in model units at φ.

        Differentiable in φ. ``linear_variance_d`` holds v_j = σ_f² λ_j × linear_factor,
        or is None without a linear part; the tuple is the argument list of
        `cholesky_lml_fn`'s likelihood.
        """
        values = self._values(phi_P)
        d = self.num_features
        lengthscale_d = torch.stack(values[:d]) * self.lengthscale_factor
        outputscale, noise = values[d], values[d + 1]
        if not self.has_linear:
            return lengthscale_d, outputscale, noise, None
        weight_d = torch.stack(values[d + 2 :])
        return lengthscale_d, outputscale, noise, outputscale * weight_d * self.linear_factor

    def log_prob(self, phi_P: Tensor) -> Tensor:
        """Log density of φ under the hyperprior (Jacobians included)."""
        free = [h for h in self._all if h.free]
        if phi_P.shape != (len(free),):
            raise ValueError(f"phi must have shape ({len(free)},), got {tuple(phi_P.shape)}")
        terms = [h.log_prob_unconstrained(phi_P[k]) for k, h in enumerate(free)]
        return torch.stack(terms).sum() if terms else phi_P.new_zeros(())

    def sample_unconstrained(self, n: int, generator: torch.Generator) -> Tensor:
        """n draws of φ from the hyperprior, shape (n, P)."""
        columns = [h.to_unconstrained(h.sample((n,), generator)) for h in self._all if h.free]
        if not columns:
            return torch.zeros(n, 0, dtype=_DTYPE)
        return torch.stack(columns, dim=-1)

    def to_gp_hyperparameters(self, phi_P: Tensor) -> GPHyperparameters | LinearGPHyperparameters:
        """The exact GP's hyperparameters (model units) at φ.

        `GPHyperparameters` (for gpytorch's `exact_gp_predictive`) without a linear part,
        `LinearGPHyperparameters` (for `cholesky_gp_predictive`) with one.
        """
        lengthscale_d, outputscale, noise, linear_variance_d = self.unpack(phi_P.detach())
        stationary = GPHyperparameters(
            lengthscale=lengthscale_d,
            outputscale=float(outputscale),
            noise=float(noise),
            kernel=self.kernel,
        )
        if linear_variance_d is None:
            return stationary
        return LinearGPHyperparameters(stationary=stationary, linear_variance=linear_variance_d)
