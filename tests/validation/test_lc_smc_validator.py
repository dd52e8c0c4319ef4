"""The `lc-smc` validator: a single-curve PFN against tempered SMC over the parametric posterior.

A tiny random PFN and a small SMC budget go through the whole report on a noisy curve
prior (figures, JSON, tables, checks, per-task diagnostics); the exact stand-in of the
validator contract (importance sampling from the prior, `tests.validation.test_lc_nuts`)
is scored against SMC here within the contract's tolerance, and the blind one is not.
"""

from __future__ import annotations

import json
import math

import pytest

from pfnkit.checkpoint import Checkpoint
from pfnkit.reference.tempered_smc import SMCConfig
from pfnkit.validation import VALIDATORS, ValidationOptions, resolve_reference, validate
from pfnkit.validation.lc_nuts import lc_nuts_tables, validate_lc_nuts
from pfnkit.validation.lc_smc import LcSmcValidator, SmcReference
from priors.gp import GPPrior
from priors.learning_curves_parametric import ParametricCurvePrior
from tests.validation.test_lc_nuts import LC_NUTS_GAP, NOISY, CurveStandIn, _tiny_pfn

SMALL_SMC = SMCConfig(particles=1000, min_moves=10, max_moves=40)


def test_lc_smc_is_registered_and_resolves() -> None:
    assert isinstance(VALIDATORS["lc-smc"], LcSmcValidator)
    assert resolve_reference({"reference": "lc-nuts"}, "lc-smc") == "lc-smc"


def test_the_exact_stand_in_is_within_the_gap_of_smc_and_the_blind_one_is_not() -> None:
    prior = ParametricCurvePrior(NOISY)
    reports = {
        name: validate_lc_nuts(
            model,
            prior,
            checkpoint=name,
            n_ctx_sizes=(3,),
            n_tasks=2,
            n_qry=20,
            reference=SmcReference(SMALL_SMC),
            tolerances={"nll_gap_mean": LC_NUTS_GAP},
        )  # fmt: skip
        for name, model in (
            ("exact", CurveStandIn(prior)),
            ("blind", CurveStandIn(prior, blind=True)),
        )
    }
    data = json.loads(json.dumps(reports["exact"].to_dict()))
    assert data["reference"].startswith("tempered smc") and data["budget"]["particles"] == 1000
    (size,) = data["sizes"]
    assert size["n_trusted"] == 2 and math.isfinite(size["ref_nll"])
    assert set(data["tasks"][0]["diagnostics"]) == {"agreement", "min_final_ess", "temperatures",
                                                    "moves"}  # fmt: skip
    assert reports["exact"].passed, data["checks"]
    assert not reports["blind"].passed
    headers = [column.header for column in lc_nuts_tables(data, "SMC")[0].columns]
    assert "SMC NLL" in headers and "SMC s/task" in headers


def test_a_prior_without_a_parametric_posterior_is_refused() -> None:
    card = {"prior_name": "gp", "prior_config": {}, "reference": "lc-smc"}
    checkpoint = Checkpoint(name="gp-like", model=_tiny_pfn(), card=card)
    with pytest.raises(ValueError, match="lc-parametric"):
        validate(checkpoint, GPPrior(), options=ValidationOptions(tasks=1, sizes=(2,)))


def test_the_validator_uses_the_default_smc_budget() -> None:
    reference = VALIDATORS["lc-smc"].reference(ValidationOptions(tasks=1, sizes=(2,)))
    assert isinstance(reference, SmcReference) and reference.config.runs >= 2
