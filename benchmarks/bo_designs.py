"""BO surrogates on the designs a BO run makes: PFN and ML-II GP against the true GP.

Run:  OMP_NUM_THREADS=1 python benchmarks/bo_designs.py [--checkpoints gp,gp-bo-lownoise]
          [--dim 6] [--tasks 30] [--n-ctx 40] [--prior-config examples/configs/gp_bo_ft.toml]
          [--json out.json] [--markdown] [--smoke]

Each task draws GP hyperparameters from the [prior] of --prior-config (Matérn-5/2 ARD,
lengthscales times √d in the box's standardized units √12 (u − 1/2), as the BO
checkpoints read the box), a design of --n-ctx observed points and 20 query points in
the unit cube, and one GP draw with noise on all of them. Designs (written here, apart
from the training prior's `priors/clustered_inputs.py`):

* ``uniform``: every point uniform in the cube;
* ``cluster``: 12 uniform points, the rest (and every query) N(c, 0.1²) around a uniform
  centre c, clipped to the cube, as a BO run that has found a basin;
* ``tight``: the same at radius 0.02, a run refining its incumbent;
* ``corner``: radius 0.1 around a corner of the cube, where acquisition searches that
  stop at the bounds pile up.

Scored per task: the mean NLL of the query values under each surrogate minus that under
the GP with the task's true hyperparameters (the oracle, which no method can beat on
average), so a gap is what not knowing the hyperparameters costs, plus any error of the
approximation. The PFN reads standardized values (`PFNSurrogate`, y_transform
"standardize"); ML-II is scikit-learn's GaussianProcessRegressor (Matérn-5/2 ARD, a
constant and a white-noise kernel, normalize_y, 2 restarts). Printed: mean and median gap
per design and method.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tomllib
import warnings
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process import kernels as sk

from pfnkit.bo.surrogate import PFNSurrogate
from priors.gp_kernels import kernel_matrix
from priors.hyperprior import Hyperprior

ROOT = Path(__file__).resolve().parents[1]
DESIGNS = ("uniform", "cluster", "tight", "corner")
N_UNIFORM_IN_CLUSTERED = 12
RADIUS = {"cluster": 0.1, "tight": 0.02, "corner": 0.1}
N_QUERY = 20
SMOKE = {"tasks": 2, "n_ctx": 16, "dim": 2}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", default="gp,gp-bo-lownoise", help="names or paths, comma-sep.")
    p.add_argument("--dim", type=int, default=6, help="dimension of the box")
    p.add_argument("--tasks", type=int, default=30, help="GP draws per design")
    p.add_argument("--n-ctx", type=int, default=40, help="observed points per task")
    p.add_argument("--prior-config", default="examples/configs/gp_bo_ft.toml")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the gaps per design and method to this file")
    p.add_argument("--markdown", action="store_true", help="also print a markdown table")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for the tests")
    args = p.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    if args.n_ctx <= N_UNIFORM_IN_CLUSTERED:
        args.n_ctx = max(args.n_ctx, N_UNIFORM_IN_CLUSTERED + 1)
    return args


def draw_design(design: str, n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """n context then N_QUERY query points in [0, 1]^d (see the module docstring)."""
    if design == "uniform":
        return rng.uniform(size=(n + N_QUERY, d))
    centre = rng.uniform(size=d) if design != "corner" else (rng.uniform(size=d) < 0.5) * 1.0
    spread = centre + RADIUS[design] * rng.standard_normal(
        (n - N_UNIFORM_IN_CLUSTERED + N_QUERY, d)
    )
    return np.concatenate([rng.uniform(size=(N_UNIFORM_IN_CLUSTERED, d)), spread.clip(0, 1)])


def matern52(a: np.ndarray, b: np.ndarray, lengthscale: np.ndarray, scale: float) -> np.ndarray:
    """The Matérn-5/2 ARD kernel matrix of the GP prior (`priors.gp_kernels`), in numpy."""
    a_1ND, b_1MD, ls_1D = (
        torch.as_tensor(v, dtype=torch.float64)[None] for v in (a, b, lengthscale)
    )
    scale_1 = torch.tensor([scale], dtype=torch.float64)
    return kernel_matrix("matern52", a_1ND, b_1MD, ls_1D, scale_1)[0].numpy()


def gaussian_nll(y: np.ndarray, mean: np.ndarray, var: np.ndarray) -> float:
    return float(np.mean(0.5 * np.log(2 * np.pi * var) + 0.5 * (y - mean) ** 2 / var))


def oracle_predictive(cov: np.ndarray, n: int, prior_var: float, y_ctx: np.ndarray):  # noqa: ANN201
    """Mean and variance of noisy y at points n.. given y at points ..n, under joint `cov`."""
    k_qc, k_cc = cov[n:, :n], cov[:n, :n]
    mean = k_qc @ np.linalg.solve(k_cc, y_ctx)
    return mean, prior_var - np.einsum("qc,cq->q", k_qc, np.linalg.solve(k_cc, k_qc.T))


def one_task(design, d, n, hyper, rng, surrogates):  # noqa: ANN001, ANN201
    """NLL gaps to the oracle GP of every surrogate and of ML-II on one drawn task."""
    lengthscale, outputscale, noise = hyper
    u = draw_design(design, n, d, rng)
    x = (u - 0.5) * math.sqrt(12)
    cov = matern52(x, x, lengthscale, outputscale) + noise * np.eye(len(x))
    y = np.linalg.cholesky(cov + 1e-9 * np.eye(len(x))) @ rng.standard_normal(len(x))
    ctx, qry = slice(0, n), slice(n, None)
    oracle = gaussian_nll(y[qry], *oracle_predictive(cov, n, outputscale + noise, y[ctx]))
    gaps = {}
    for name, surrogate in surrogates.items():
        surrogate.fit(u[ctx], y[ctx])
        z = torch.as_tensor(surrogate.transform_y(y[qry]))
        with torch.no_grad():
            log_p = surrogate.posterior_unit(torch.as_tensor(u[qry])).log_prob(z).double()
        # density of y = density of z / scale
        gaps[name] = float(-log_p.mean()) + math.log(surrogate.y_transform.scale) - oracle
    kernel = sk.ConstantKernel(1.0, (1e-3, 1e2)) * sk.Matern(
        np.ones(d), (1e-2, 1e3), nu=2.5
    ) + sk.WhiteKernel(1e-2, (1e-6, 1e1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gpr = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=2,
                                       random_state=0).fit(x[ctx], y[ctx])  # fmt: skip
    m2, s2 = gpr.predict(x[qry], return_std=True)
    gaps["ML-II GP"] = gaussian_nll(y[qry], m2, np.maximum(s2, 1e-9) ** 2) - oracle
    return gaps


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    prior = tomllib.loads((ROOT / args.prior_config).read_text())["prior"]
    hyperpriors = [Hyperprior.coerce(prior[k]) for k in ("lengthscale", "outputscale", "noise")]
    box = np.array([[0.0, 1.0]] * args.dim)
    surrogates = {
        name: PFNSurrogate(box, name, y_transform="standardize", dtype=torch.float64)
        for name in args.checkpoints.split(",")
    }
    generator = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    results: dict[str, dict[str, list[float]]] = {}
    for design in DESIGNS:
        for _ in range(args.tasks):
            sizes = (args.dim, 1, 1)
            ls, scale, noise = (
                h.sample((n,), generator).double().numpy()
                for h, n in zip(hyperpriors, sizes, strict=True)
            )
            hyper = (ls * math.sqrt(args.dim), float(scale[0]), float(noise[0]))
            for name, gap in one_task(design, args.dim, args.n_ctx, hyper, rng, surrogates).items():
                results.setdefault(design, {}).setdefault(name, []).append(gap)
    summary = {
        design: {
            name: {"mean": float(np.mean(g)), "median": float(np.median(g)), "n": len(g)}
            for name, g in by_method.items()
        }
        for design, by_method in results.items()
    }
    methods = list(next(iter(summary.values())))
    table = Table(title=f"NLL gap to the true GP (nats per point), d={args.dim}, n={args.n_ctx}")
    table.add_column("design")
    for m in methods:
        table.add_column(f"{m} mean / median", justify="right")
    for design, row in summary.items():
        table.add_row(design, *(f"{row[m]['mean']:.3f} / {row[m]['median']:.3f}" for m in methods))
    Console().print(table)
    if args.markdown:
        print("| design | " + " | ".join(f"{m} (mean / median)" for m in methods) + " |")
        print("|---|" + "---:|" * len(methods))
        for design, row in summary.items():
            cells = (f"{row[m]['mean']:.3f} / {row[m]['median']:.3f}" for m in methods)
            print(f"| {design} | " + " | ".join(cells) + " |")
    out = {"command": "python " + " ".join(sys.argv), "args": vars(args), "summary": summary}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
