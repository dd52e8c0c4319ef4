"""examples/context_extrapolation.py: its oracle NLL matches a NumPy GP; it runs end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

import priors
from pfnkit.checkpoint import load_checkpoint
from tests.helpers import load_script

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "gp10-tiny.json"  # RBF, 10 features, trained up to 200 points
FLOAT64_ATOL = 1e-8  # NumPy vs torch Cholesky on float32-valued inputs


def _module():
    return load_script(ROOT / "examples" / "context_extrapolation.py")


def _numpy_nll(x_ctx, y_ctx, x_qry, y_qry, lengthscale, outputscale, noise) -> float:
    def k(a, b):
        sq = (((a[:, None, :] - b[None, :, :]) / lengthscale) ** 2).sum(-1)
        return outputscale * np.exp(-0.5 * sq)

    cov = k(x_ctx, x_ctx) + noise * np.eye(len(y_ctx))
    cross = k(x_qry, x_ctx)
    mean = cross @ np.linalg.solve(cov, y_ctx)
    var = outputscale + noise - np.einsum("ij,ji->i", cross, np.linalg.solve(cov, cross.T))
    return float(np.mean(0.5 * np.log(2 * np.pi * var) + 0.5 * (y_qry - mean) ** 2 / var))


def test_oracle_nll_matches_a_numpy_gp_at_the_true_hyperparameters() -> None:
    module = _module()
    ckpt = load_checkpoint(TINY)
    prior = priors.make_prior(ckpt.card["prior_name"], ckpt.card["prior_config"])
    batch = prior.sample(2, 12, 5, generator=torch.Generator().manual_seed(0))
    for i in range(2):
        m = batch.meta
        expected = _numpy_nll(
            batch.x_ctx[i].double().numpy(), batch.y_ctx[i].double().numpy(),
            batch.x_qry[i].double().numpy(), batch.y_qry[i].double().numpy(),
            m["lengthscale"][i].double().numpy(), float(m["outputscale"][i]),
            float(m["noise"][i]),
        )  # fmt: skip
        got = module._oracle_nll(batch, i, 10, "rbf")
        assert abs(got - expected) < FLOAT64_ATOL


def test_rows_flag_contexts_beyond_training_and_the_script_prints(capsys) -> None:
    module = _module()
    rows = module.measure(load_checkpoint(TINY), sizes=(8, 210), dims=(10,), n_tasks=3, n_qry=4)
    assert [(r.n_ctx, r.beyond_training) for r in rows] == [(8, False), (210, True)]
    for r in rows:
        assert math.isclose(r.gap, r.pfn_nll - r.oracle_nll, abs_tol=1e-9)
        assert math.isfinite(r.gap_stderr)
    assert module.main(["--checkpoint", str(TINY), "--sizes", "4", "--dims", "10",
                        "--tasks", "2"]) == 0  # fmt: skip
    assert "PFN - oracle" in capsys.readouterr().out
