"""Validate a single-curve PFN against tempered SMC over the parametric learning-curve posterior.

The `lc-nuts` validator (`pfnkit.validation.lc_nuts`: tasks, scores, report, tables, plots
and checks) with tempered SMC (`pfnkit.reference.lc_smc`) in place of NUTS: SMC starts
from prior draws, so it finds every mode of the family weights that a pinned curve leaves
open, where NUTS's chains disagree and stay untrusted. A task counts as trusted when the
SMC gate passes (the runs reach β = 1 with a final ESS above its floor and their
predictives agree; see `pfnkit.reference.lc_smc`). Registered as "lc-smc"; the card's
tolerances gate the same figures as for "lc-nuts" (``nll_gap_mean``,
``coverage90_error_max``, ``speedup_min``, ``trusted_fraction_min``), the reference's
seconds per task being those of all its SMC runs together.
"""

from __future__ import annotations

from dataclasses import dataclass

from pfnkit.data import Batch
from pfnkit.reference.lc_posterior import CurvePosteriorPrior
from pfnkit.reference.lc_smc import DEFAULT_LC_SMC, curve_posterior_smc
from pfnkit.reference.tempered_smc import SMCConfig
from pfnkit.validation.lc_nuts import LcNutsValidator, Reference, ReferenceFit
from pfnkit.validation.registry import ValidationOptions, register_validator

__all__ = ["LcSmcValidator", "SmcReference"]


@dataclass(frozen=True)
class SmcReference:
    """Tempered SMC over θ (`curve_posterior_smc`) as an lc validator's reference."""

    config: SMCConfig = DEFAULT_LC_SMC
    label = "tempered smc over the parametric curve posterior"
    short = "SMC"

    def __call__(self, prior: CurvePosteriorPrior, task: Batch, seed: int) -> ReferenceFit:
        posterior = curve_posterior_smc(prior, task, smc=self.config, seed=seed)
        diagnostics = {
            "agreement": posterior.agreement if posterior.agreement is not None else float("nan"),
            "min_final_ess": posterior.min_ess,
            "temperatures": float(max(len(run.betas) - 1 for run in posterior.runs)),
            "moves": float(sum(run.moves for run in posterior.runs)),
        }
        return ReferenceFit(posterior.predictive(task.x_qry[0]), posterior.trusted, diagnostics)


class LcSmcValidator(LcNutsValidator):
    """A single-curve PFN against tempered SMC over its parametric prior's posterior."""

    name = "lc-smc"
    short = "SMC"
    defaults = ValidationOptions(tasks=2, sizes=(2, 5, 10, 20, 40), nuts_warmup=0,
                                 nuts_samples=0)  # fmt: skip

    def reference(self, options: ValidationOptions) -> Reference:
        """SMC with `DEFAULT_LC_SMC` (the NUTS options do not apply)."""
        return SmcReference(DEFAULT_LC_SMC)


register_validator(LcSmcValidator())
