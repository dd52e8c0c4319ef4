"""The freeze-thaw prior over sets of learning curves (Swersky, Snoek & Adams, arXiv 1406.3896).

A task is a set of C configurations x_c ∈ [0, 1]^D of one training run each, observed
for some epochs. Asymptotes come from a GP over configurations and each curve decays
towards its asymptote:

    f ~ GP(μ, σ_f² k_x),   y_c(s) = f(x_c) + a_c φ(s) + g_c(s) + ε,   g_c ~ GP(0, σ_g² k_t),

with ε ~ N(0, σ_n²), s = t / T the epoch fraction of epoch t ∈ {1, ..., T}, k_x a Matérn
(or RBF) kernel and the paper's exponential-decay kernel k_t(s, s') = β^α / (s + s' + β)^α,
the covariance of a random mixture of exponentials e^{-λs} with λ ~ Gamma(α, rate β). The
kernel is written in epoch fractions, so β = 0.1 means a typical decay time of a tenth of
the run whatever T is. The term a_c φ(s), φ(s) = (β / (s + β))^α = E[e^{-λs}] the expected
decay, with a per-curve amplitude a_c ~ N(m_a, s_a²), is this package's addition to the
paper: with m_a > 0 curves start above their asymptote and fall towards it, as validation
errors do, which the zero-mean g_c cannot express. The model stays a GP, so the oracle
stays exact. The exact posterior of this prior is the structured GP of
`pfnkit.reference.freeze_thaw` (which shares no code with this sampler).

Model inputs are (configuration, epoch) pairs: rows of D + 1 columns, the D configuration
features and then s ∈ (0, 1]. A task's layout:

* C configurations per batch, drawn from [num_configs_min, num_configs_max] (raised so the
  C × T cells hold every context and query point), each x_c ~ U[0, 1]^D; with
  ``num_dims_min < num_dims`` a task uses d ≤ D features and the rest are zero (a zero
  column adds nothing to the kernel's distances, so the model sees a d-dimensional task).
* Context: every configuration gets a training speed r_c (log-uniform over a factor
  ``speed_spread``); cell (c, t) gets the time τ_{c,t} = Σ_{u ≤ t} E_{c,u} / r_c with
  E ~ Exp(1), and the n_ctx earliest cells are the context. τ grows with t, so every
  configuration is observed on a prefix of epochs 1..e_c (e_c = 0: not trained yet),
  as in a freeze-thaw run, and slow configurations are often unseen.
* Queries: n_qry cells drawn uniformly from the cells not in the context, so later
  epochs of partial curves and whole curves of unseen configurations.

Which cells are observed never depends on the values y, so the design is ignorable and
the GP posterior is the Bayes-optimal predictor for these tasks (a selection that
favoured good curves, as a real optimiser's does, would make it informative).

Values are not clipped, so the exact posterior stays exact. The defaults are one set of
hyperparameters fitted to the real scikit-learn curves of ``benchmarks/data`` (all six
tables at once, by the predictive NLL of the final epoch given partial curves; the fit
and its leave-one-table-out check are in ``benchmarks/lc_fit.py``): asymptotes around
μ = 0.15 (σ_f² = 0.015), curves falling from about 0.4 with amplitude m_a = 0.3. Real
errors crowd near 0, which a Gaussian cannot respect, and first epochs vary widely, so
about a fifth of the prior's values fall outside [0, 1] (16% below 0, 3% above 1;
``tests/priors/test_learning_curves.py`` bounds the fraction).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pfnkit.data import Batch
from priors.gp_kernels import KERNELS, kernel_matrix
from priors.hyperprior import Hyperprior

__all__ = ["FreezeThawPrior", "FreezeThawPriorConfig"]

_HYPERS = ("mean", "lengthscale", "outputscale", "curve_scale", "alpha", "beta", "noise",
           "amplitude_mean", "amplitude_var")  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class FreezeThawPriorConfig:
    """Sets of learning curves: a GP over asymptotes, exponential-decay curves, noise.

    Attributes:
        num_dims: configuration features D; the model reads D + 1 columns (the epoch last).
        num_dims_min: fewest used features per task (None: always D); unused ones are zero.
        max_epoch: epochs T per curve; the epoch column holds t / T.
        num_configs_min: fewest configurations C per batch (raised to ⌈(n_ctx + n_qry) / T⌉).
        num_configs_max: most configurations C per batch (raised likewise).
        speed_spread: ratio of the fastest to the slowest configuration's training speed.
        kernel: k_x over configurations, one of "rbf", "matern12", "matern32", "matern52".
        mean: μ, prior mean of the asymptotes.
        lengthscale: lengthscale of k_x (each used feature draws its own under a hyperprior).
        outputscale: σ_f², variance of the asymptotes.
        curve_scale: σ_g², variance scale of a curve around its asymptote.
        alpha: α of k_t (shape of the Gamma mixture over decay rates).
        beta: β of k_t (rate of that mixture, in epoch fractions).
        noise: σ_n², observation noise variance.
        amplitude_mean: m_a, prior mean of a curve's amplitude along the decay φ(s).
        amplitude_var: s_a², prior variance of that amplitude.
    """

    num_dims: int = 4
    num_dims_min: int | None = None
    max_epoch: int = 50
    num_configs_min: int = 1
    num_configs_max: int = 30
    speed_spread: float = 100.0
    kernel: str = "matern52"
    mean: Hyperprior = Hyperprior(a=0.15)
    lengthscale: Hyperprior = Hyperprior(a=0.7)
    outputscale: Hyperprior = Hyperprior(a=0.015)
    curve_scale: Hyperprior = Hyperprior(a=0.25)
    alpha: Hyperprior = Hyperprior(a=2.5)
    beta: Hyperprior = Hyperprior(a=0.4)
    noise: Hyperprior = Hyperprior(a=1e-3)
    amplitude_mean: Hyperprior = Hyperprior(a=0.3)
    amplitude_var: Hyperprior = Hyperprior(a=0.08)

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(f"unknown kernel {self.kernel!r}; choose from {KERNELS}")
        if self.num_dims < 1 or self.max_epoch < 1:
            raise ValueError(
                f"num_dims and max_epoch must be positive, got {self.num_dims}, {self.max_epoch}"
            )
        d_min = self.num_dims if self.num_dims_min is None else self.num_dims_min
        if not 1 <= d_min <= self.num_dims:
            raise ValueError(f"num_dims_min must lie in [1, {self.num_dims}], got {d_min}")
        object.__setattr__(self, "num_dims_min", d_min)
        if not 1 <= self.num_configs_min <= self.num_configs_max:
            raise ValueError(
                "need 1 <= num_configs_min <= num_configs_max, got "
                f"{self.num_configs_min}, {self.num_configs_max}"
            )
        if not (math.isfinite(self.speed_spread) and self.speed_spread >= 1):
            raise ValueError(f"speed_spread must be >= 1, got {self.speed_spread}")
        for name in _HYPERS:
            object.__setattr__(self, name, Hyperprior.coerce(getattr(self, name)))

    @property
    def has_hyperpriors(self) -> bool:
        """True when any GP hyperparameter is drawn per task."""
        return any(getattr(self, name).family != "fixed" for name in _HYPERS)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FreezeThawPriorConfig:
        return cls(**data)


class FreezeThawPrior:
    """Batched sampler of freeze-thaw tasks (float64 inside, float32 out)."""

    def __init__(self, config: FreezeThawPriorConfig | None = None) -> None:
        self.config = config or FreezeThawPriorConfig()

    @property
    def has_hyperpriors(self) -> bool:
        """True when tasks draw their hyperparameters (the exact GP then needs them from meta)."""
        return self.config.has_hyperpriors

    def model_sizes(self, kind: str) -> dict[str, int]:
        """A regression PFN over D + 1 inputs (`pfnkit.data.PretrainPrior`)."""
        if kind != "pfn":
            raise ValueError(
                f"a freeze-thaw prior trains a PFN ([model] kind = 'pfn'), not {kind!r}"
            )
        return {"num_features": self.config.num_dims + 1}

    def card_data_mapping(self, declared: dict[str, str] | None) -> dict[str, str] | None:
        """`declared` unchanged: the prior rescales no features."""
        if declared is not None and declared.get("pad_rescale", "none") != "none":
            raise ValueError(
                "a freeze-thaw prior rescales no features, so [card] data_mapping must not set "
                f"pad_rescale (got {declared['pad_rescale']!r})"
            )
        return declared

    def freeze_thaw_hyperparameters(self, task: Batch) -> dict[str, Any]:
        """The GP a one-task batch was drawn from: keyword arguments of
        `pfnkit.reference.freeze_thaw.FreezeThawHyperparameters`."""
        if task.batch_size != 1:
            raise ValueError(f"takes a one-task batch, got {task.batch_size} tasks")
        meta = task.meta
        hyper = {name: float(meta[name][0]) for name in _HYPERS if name != "lengthscale"}
        return {
            **hyper,
            "lengthscale": meta["lengthscale"][0].double(),
            "kernel": self.config.kernel,
        }

    def num_configs(self, n_cells: int, generator: torch.Generator) -> int:
        """C for one batch: uniform on [num_configs_min, num_configs_max], raised to fit n_cells."""
        cfg = self.config
        need = max(1, math.ceil(n_cells / cfg.max_epoch))
        lo, hi = max(cfg.num_configs_min, need), max(cfg.num_configs_max, need)
        return int(torch.randint(lo, hi + 1, (), generator=generator))

    def _hyperparameters(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        cfg = self.config
        scalars = [name for name in _HYPERS if name != "lengthscale"]
        draws = {name: getattr(cfg, name).sample((batch_size,), generator) for name in scalars}
        draws["lengthscale"] = torch.stack(
            [cfg.lengthscale.sample((batch_size,), generator) for _ in range(cfg.num_dims)], -1
        )
        return draws

    def _configs(
        self, batch_size: int, n_configs: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """Configurations (B, C, D) with unused features zeroed, and d per task (B,)."""
        cfg = self.config
        x_BCD = torch.rand(
            batch_size, n_configs, cfg.num_dims, generator=generator, dtype=torch.float64
        )
        if cfg.num_dims_min == cfg.num_dims:
            return x_BCD, torch.full((batch_size,), cfg.num_dims, dtype=torch.float64)
        d_B = torch.randint(cfg.num_dims_min, cfg.num_dims + 1, (batch_size,), generator=generator)
        used_BD = torch.arange(cfg.num_dims) < d_B[:, None]
        return x_BCD * used_BD[:, None, :], d_B.to(torch.float64)

    def _curves(
        self, x_BCD: Tensor, hyper: dict[str, Tensor], generator: torch.Generator
    ) -> Tensor:
        """Noisy curve values y (B, C, T) at every epoch of every configuration."""
        cfg = self.config
        b, c, _ = x_BCD.shape
        k_BCC = kernel_matrix(cfg.kernel, x_BCD, x_BCD, hyper["lengthscale"], hyper["outputscale"])
        jitter = 1e-9 * hyper["outputscale"][:, None, None] * torch.eye(c, dtype=torch.float64)
        z_BC1 = torch.randn(b, c, 1, generator=generator, dtype=torch.float64)
        f_BC = hyper["mean"][:, None] + (torch.linalg.cholesky(k_BCC + jitter) @ z_BC1)[..., 0]
        s_T = torch.arange(1, cfg.max_epoch + 1, dtype=torch.float64) / cfg.max_epoch
        beta_B11, alpha_B11 = hyper["beta"][:, None, None], hyper["alpha"][:, None, None]
        k_BTT = (beta_B11 / (s_T[:, None] + s_T[None, :] + beta_B11)) ** alpha_B11
        k_BTT = hyper["curve_scale"][:, None, None] * k_BTT
        eye = torch.eye(cfg.max_epoch, dtype=torch.float64)
        chol_BTT = torch.linalg.cholesky(k_BTT + 1e-9 * hyper["curve_scale"][:, None, None] * eye)
        z_BCT = torch.randn(b, c, cfg.max_epoch, generator=generator, dtype=torch.float64)
        g_BCT = z_BCT @ chol_BTT.transpose(-1, -2)
        eps_BCT = torch.randn(b, c, cfg.max_epoch, generator=generator, dtype=torch.float64)
        z_BC = torch.randn(b, c, generator=generator, dtype=torch.float64)
        a_BC = hyper["amplitude_mean"][:, None] + hyper["amplitude_var"].sqrt()[:, None] * z_BC
        phi_B1T = (beta_B11 / (s_T + beta_B11)) ** alpha_B11  # expected decay E[e^{-λs}]
        curves_BCT = f_BC[..., None] + a_BC[..., None] * phi_B1T + g_BCT
        return curves_BCT + hyper["noise"].sqrt()[:, None, None] * eps_BCT

    def _cells(self, batch_size: int, n_configs: int, n_ctx: int, n_qry: int,
               generator: torch.Generator) -> tuple[Tensor, Tensor]:  # fmt: skip
        """Flat cell indices c·T + (t − 1) of the context (B, n_ctx) and queries (B, n_qry)."""
        t = self.config.max_epoch
        log_spread = math.log(self.config.speed_spread)
        u_BC = torch.rand(batch_size, n_configs, generator=generator, dtype=torch.float64)
        speed_BC1 = torch.exp(log_spread * (u_BC - 0.5))[..., None]
        u_BCT = torch.rand(batch_size, n_configs, t, generator=generator, dtype=torch.float64)
        time_BN = (torch.cumsum(-torch.log1p(-u_BCT), dim=-1) / speed_BC1).flatten(1)
        ctx_BN = torch.topk(time_BN, n_ctx, dim=-1, largest=False).indices
        draw_BN = torch.rand(time_BN.shape, generator=generator, dtype=torch.float64)
        draw_BN = draw_BN.scatter(1, ctx_BN, math.inf)
        qry_BM = torch.topk(draw_BN, n_qry, dim=-1, largest=False).indices
        return ctx_BN.sort(-1).values, qry_BM

    def sample(
        self, batch_size: int, n_ctx: int, n_qry: int, *, generator: torch.Generator
    ) -> Batch:
        """Draw tasks of n_ctx observed cells and n_qry unobserved ones (see the module doc).

        ``meta`` holds per task "mean", "outputscale", "curve_scale", "alpha", "beta",
        "noise", "amplitude_mean", "amplitude_var" (B,), "lengthscale" (B, D),
        "num_used_dims" (B,) and "num_configs" (B,).
        """
        cfg = self.config
        n_configs = self.num_configs(n_ctx + n_qry, generator)
        hyper = self._hyperparameters(batch_size, generator)
        x_BCD, d_B = self._configs(batch_size, n_configs, generator)
        y_BN = self._curves(x_BCD, hyper, generator).flatten(1)
        ctx_BN, qry_BM = self._cells(batch_size, n_configs, n_ctx, n_qry, generator)
        s_T = torch.arange(1, cfg.max_epoch + 1, dtype=torch.float64) / cfg.max_epoch
        rows_BNE = torch.cat(
            [x_BCD.repeat_interleave(cfg.max_epoch, dim=1),
             s_T.repeat(n_configs)[None, :, None].expand(batch_size, -1, 1)], dim=-1,
        )  # fmt: skip

        def take(index_BK: Tensor) -> tuple[Tensor, Tensor]:
            rows = torch.gather(rows_BNE, 1, index_BK[..., None].expand(-1, -1, rows_BNE.shape[-1]))
            return rows.float(), torch.gather(y_BN, 1, index_BK).float()

        (x_ctx, y_ctx), (x_qry, y_qry) = take(ctx_BN), take(qry_BM)
        meta = {**hyper, "num_used_dims": d_B, "num_configs": torch.full_like(d_B, n_configs)}
        return Batch(x_ctx=x_ctx, y_ctx=y_ctx, x_qry=x_qry, y_qry=y_qry,
                     meta={k: v.float() for k, v in meta.items()})  # fmt: skip
