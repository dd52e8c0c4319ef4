"""Prior-change benchmark: the Distribution Transformer's one forward pass against NPE retraining.

Run:  python benchmarks/dt_vs_npe.py [--checkpoint dt-gauss2d] [--budget 10000]
          [--max-epochs 300] [--n-test 500] [--density-estimator maf] [--seed 0]
          [--json out.json] [--smoke]

Issue 6. The simulator is the Gaussian location model θ ∈ R², x_i ~ N(θ, I), with N_OBS = 10
observations per dataset; sbi's NPE sees them flattened into one 20-vector. Two fixed
Gaussian-mixture priors over θ: A (two components, lower left) and B (three components,
shifted up and right).

1. NPE (sbi's `NPE`, i.e. NPE-C, single round, sbi's default training settings) is trained on
   --budget simulations from prior A, then retrained from scratch on --budget simulations
   from prior B. The retraining time counts simulation, training and `build_posterior`.
2. The Distribution Transformer adapts to prior B by taking it as an input: its adaptation
   cost is one `PosteriorEstimator.posterior(prior_B, x)` call, timed per dataset (median
   over the test datasets, after one warm-up call). One batched forward pass over all test
   datasets is timed too and divided by their number; its NLLs must match the single calls'.
   NPE on A runs first and absorbs sbi's one-off start-up costs, so B's retraining time is
   free of them.
3. All methods are scored on the same --n-test datasets drawn from prior B: the mean of
   -log q(θ_true | x) for NPE retrained on B, NPE trained on A (stale, for context), the DT
   given prior B, and the exact conjugate posterior (`conjugate_gmm_posterior`, the floor).
   Differences are paired, with their standard errors.

The target: NPE retraining time / DT time per adaptation >= 1e4, and the DT's mean NLL at
most 0.1 nats above the retrained NPE's. Nothing is asserted; the verdict is printed. The
script also checks that prior B and N_OBS lie inside the range the checkpoint was trained on
(its card's prior_config and train_config) and prints the result.

Deterministic given --seed: simulations come from seeded torch.Generators, and torch's global
generator (which sbi uses for initialisation, the validation split and shuffling) is seeded
before each NPE training. Times are wall-clock (time.perf_counter) on the CPU, with torch's
thread count as set by OMP_NUM_THREADS.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import sbi
import torch
from dt_vs_npe_report import (
    NLL_MARGIN,
    SPEED_TARGET,
    checks_table,
    mean_se,
    nll_summary,
    results_table,
    verdict,
)
from rich.console import Console
from sbi.inference import NPE
from sbi.utils import process_prior
from torch import Tensor
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from pfnkit.estimators.posterior import PosteriorEstimator
from pfnkit.metrics import mean_or_none
from pfnkit.reference.analytic import conjugate_gmm_posterior
from priors.gmm import GMMPriorConfig

N_OBS = 10  # observations per dataset
DIM = 2  # dimension of θ and of one observation
MEAN_RADIUS_MAX = 3.0  # |μ| / mean_scale; P(χ²₂ > 9) = e^-4.5 ≈ 1.1% under N(0, mean_scale² I)


@dataclass(frozen=True, kw_only=True)
class GMMSpec:
    """A fixed Gaussian mixture prior over θ, as plain data."""

    name: str
    weights: tuple[float, ...]
    means: tuple[tuple[float, ...], ...]
    covariances: tuple[tuple[tuple[float, ...], ...], ...]

    def tensors(self) -> tuple[Tensor, Tensor, Tensor]:
        """(weights (K,), means (K, d), covariances (K, d, d)) in float64."""
        values = (self.weights, self.means, self.covariances)
        return tuple(torch.tensor(v, dtype=torch.float64) for v in values)

    def mixture(self) -> MixtureSameFamily:
        weights, means, covs = self.tensors()
        return MixtureSameFamily(Categorical(probs=weights), MultivariateNormal(means, covs))


PRIOR_A = GMMSpec(
    name="A",
    weights=(0.6, 0.4),
    means=((-1.5, -1.0), (0.5, -2.0)),
    covariances=(((1.0, 0.3), (0.3, 0.8)), ((0.5, 0.0), (0.0, 1.5))),
)
PRIOR_B = GMMSpec(
    name="B",
    weights=(0.5, 0.3, 0.2),
    means=((2.0, 1.5), (0.0, 3.0), (3.5, -0.5)),
    covariances=(((0.25, 0.1), (0.1, 0.36)), ((1.0, -0.4), (-0.4, 0.8)),
                 ((0.16, 0.0), (0.0, 0.49))),
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Sizes:
    budget: int  # NPE simulations per prior
    max_epochs: int  # cap on NPE epochs (sbi stops earlier on its validation loss)
    n_test: int  # test datasets from prior B
    repeats: int  # timed batched DT passes; the median is kept


FULL = Sizes(budget=10_000, max_epochs=300, n_test=500, repeats=5)
SMOKE = Sizes(budget=200, max_epochs=2, n_test=16, repeats=1)


# ------------------------------------------------------------------------- simulation
def sample_theta(spec: GMMSpec, n: int, generator: torch.Generator) -> Tensor:
    """n draws of θ from the mixture, (n, d) float64, from `generator` only."""
    weights, means, covs = spec.tensors()
    comp = torch.multinomial(weights, n, replacement=True, generator=generator)
    z_N1 = torch.randn(n, DIM, 1, generator=generator, dtype=torch.float64)
    return means[comp] + (torch.linalg.cholesky(covs)[comp] @ z_N1).squeeze(-1)


def simulate(theta: Tensor, generator: torch.Generator) -> Tensor:
    """N_OBS observations x_i ~ N(θ, I) per θ, (n, N_OBS, d) float64."""
    noise = torch.randn(theta.shape[0], N_OBS, DIM, generator=generator, dtype=torch.float64)
    return theta.unsqueeze(1) + noise


# ------------------------------------------------------------------------------- NPE
class _SbiPrior:
    """The mixture as an object with sample/log_prob/mean/variance: sbi wraps it with support
    R^d (a torch MixtureSameFamily has a support that sbi's transforms cannot map)."""

    def __init__(self, spec: GMMSpec) -> None:
        self._mixture = spec.mixture()
        self.mean = self._mixture.mean.float()
        self.variance = self._mixture.variance.float()

    def sample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        return self._mixture.sample(sample_shape).float()

    def log_prob(self, theta: Tensor) -> Tensor:
        return self._mixture.log_prob(theta.double()).float()


class _NullTracker:
    """sbi's Tracker protocol, discarding everything (its default writes ./sbi-logs)."""

    log_dir = None

    def log_metric(self, name: str, value: float, step: int | None = None) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_params(self, params: dict[str, Any]) -> None: ...
    def add_figure(self, name: str, figure: Any, step: int | None = None) -> None: ...
    def flush(self) -> None: ...


def train_npe(spec: GMMSpec, sizes: Sizes, seed: int, estimator: str) -> tuple[Any, dict]:
    """NPE trained from scratch on `sizes.budget` fresh simulations from `spec`.

    Returns:
        sbi's DirectPosterior and a record of the times (simulation, training, total) and
        the epochs trained.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # sbi draws its initialisation and data split from here
    start = time.perf_counter()
    theta = sample_theta(spec, sizes.budget, generator)
    x = simulate(theta, generator).flatten(1)
    simulated = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("always")  # recorded, so sbi's notes stay out of the report
        prior, _, _ = process_prior(_SbiPrior(spec))
        npe = NPE(prior=prior, density_estimator=estimator, show_progress_bars=False,
                  tracker=_NullTracker())  # fmt: skip
        density = npe.append_simulations(theta.float(), x.float()).train(
            max_num_epochs=sizes.max_epochs
        )
        posterior = npe.build_posterior(density)
    done = time.perf_counter()
    epochs = len(npe.summary["epoch_durations_sec"])  # sbi runs epochs 0..max_num_epochs
    record = {
        "prior": spec.name,
        "simulations": sizes.budget,
        "simulate_s": simulated - start,
        "train_s": done - simulated,
        "total_s": done - start,
        "epochs": epochs,
        "converged": int(npe.summary["epochs_trained"][-1]) <= sizes.max_epochs,
        "best_validation_loss": float(npe.summary["best_validation_loss"][-1]),
        "sbi_warnings": sorted({str(w.message).splitlines()[0] for w in caught}),
    }
    return posterior, record


def npe_nll(posterior: Any, theta: Tensor, x_BND: Tensor) -> tuple[Tensor, float]:
    """-log q(θ | x) per dataset, and the seconds of the one batched evaluation.

    The prior's support is all of R², so nothing leaks and no renormalisation is needed.
    """
    start = time.perf_counter()
    log_q = posterior.log_prob_batched(
        theta.float(), x_BND.flatten(1).float(), norm_posterior=False
    )
    return -log_q.reshape(-1).double(), time.perf_counter() - start


# -------------------------------------------------------------------------------- DT
def dt_single(est: PosteriorEstimator, spec: GMMSpec, theta: Tensor, x_BND: Tensor) -> tuple:
    """-log q(θ | x) per dataset from one `posterior(prior, x)` call each, and their times."""
    prior = spec.tensors()
    est.posterior(prior, x_BND[0])  # warm-up
    nll, seconds = [], []
    for theta_D, x_ND in zip(theta, x_BND, strict=True):
        start = time.perf_counter()
        post = est.posterior(prior, x_ND)
        seconds.append(time.perf_counter() - start)
        nll.append(-float(post.log_prob(theta_D.to(est.dtype))))
    return torch.tensor(nll, dtype=torch.float64), seconds


@torch.no_grad()
def dt_batched(
    est: PosteriorEstimator, spec: GMMSpec, theta: Tensor, x_BND: Tensor, repeats: int
) -> tuple[Tensor, float]:
    """-log q(θ | x) from one forward pass over all datasets at once, and its median time."""
    logits, means, tril = est.prior_parameters(spec.tensors())
    b = x_BND.shape[0]
    inputs = [t.expand(b, *t.shape).to(est.device) for t in (logits, means, tril)]
    x_BND = x_BND.to(est.device, est.dtype)
    nll = -est.model(*inputs, x_BND).log_prob(theta.to(est.device, est.dtype))  # and warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        est.model(*inputs, x_BND)
        times.append(time.perf_counter() - start)
    return nll.double().cpu(), statistics.median(times)


def exact_nll(spec: GMMSpec, theta: Tensor, x_BND: Tensor) -> Tensor:
    """-log p(θ | x) under the closed-form conjugate posterior."""
    weights, means, covs = spec.tensors()
    b = x_BND.shape[0]
    post = conjugate_gmm_posterior(weights.log().expand(b, -1), means.expand(b, -1, -1),
                                   torch.linalg.cholesky(covs).expand(b, -1, -1, -1), x_BND,
                                   torch.eye(DIM, dtype=torch.float64))  # fmt: skip
    return -post.log_prob(theta)


# ----------------------------------------------------------------- checkpoint range
def range_checks(card: dict[str, Any], spec: GMMSpec) -> list[dict[str, Any]]:
    """Whether `spec` and N_OBS lie inside what the checkpoint was trained on."""
    cfg = GMMPriorConfig.from_dict(card["prior_config"])
    model = card["model_config"]
    _, means, covs = spec.tensors()
    k = len(spec.weights)
    scales = torch.linalg.eigvalsh(covs).sqrt()
    radius = float(means.norm(dim=-1).max()) / cfg.mean_scale
    n_max = int(card["train_config"]["n_ctx_max"])
    identity = [[float(i == j) for j in range(DIM)] for i in range(DIM)]
    obs_cov = [list(row) for row in cfg.obs_cov]
    obs_cov_text = "I" if obs_cov == identity else str(obs_cov)
    rows = [
        ("dimension of θ", f"{DIM}", f"{cfg.dim} (model {model['dim']})",
         DIM == cfg.dim == model["dim"]),
        ("simulator", "gaussian, Σ_obs = I", f"{cfg.simulator}, Σ_obs = {obs_cov_text}",
         cfg.simulator == "gaussian" and obs_cov == identity),
        ("components K", f"{k}", f"{cfg.k_min} to {min(cfg.k_max, model['k_max'])}",
         cfg.k_min <= k <= min(cfg.k_max, model["k_max"])),
        ("component scales", f"{float(scales.min()):.2f} to {float(scales.max()):.2f}",
         f"{cfg.scale_min:g} to {cfg.scale_max:g}",
         cfg.scale_min <= float(scales.min()) and float(scales.max()) <= cfg.scale_max),
        ("max |mean| / mean_scale", f"{radius:.2f}",
         f"<= {MEAN_RADIUS_MAX:g} (means ~ N(0, {cfg.mean_scale:g}² I))",
         radius <= MEAN_RADIUS_MAX),
        ("observations per dataset", f"{N_OBS}", f"0 to {n_max}", N_OBS <= n_max),
    ]  # fmt: skip
    keys = ("check", "prior B", "trained range", "inside")
    return [dict(zip(keys, row, strict=True)) for row in rows]


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="dt-gauss2d", help="short name or path of a DT")
    parser.add_argument("--budget", type=int, help=f"NPE simulations per prior ({FULL.budget})")
    parser.add_argument("--max-epochs", type=int, help=f"NPE epoch cap ({FULL.max_epochs})")
    parser.add_argument("--n-test", type=int, help=f"test datasets from prior B ({FULL.n_test})")
    parser.add_argument("--density-estimator", default="maf", help="sbi's NPE density estimator")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write every number to this path")
    parser.add_argument("--smoke", action="store_true", help="tiny NPE budget, few test sets")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, sizes: Sizes, console: Console) -> dict[str, Any]:
    est = PosteriorEstimator(args.checkpoint)
    checks = range_checks(est.card, PRIOR_B)
    console.print(checks_table(checks, args.checkpoint))
    generator = torch.Generator().manual_seed(args.seed + 3)
    theta = sample_theta(PRIOR_B, sizes.n_test, generator)
    x_BND = simulate(theta, generator)
    console.print(f"training NPE on prior A, then retraining on prior B ({sizes.budget:,} sims)")
    npe = {}
    nll = {"exact": exact_nll(PRIOR_B, theta, x_BND)}
    for offset, spec in ((1, PRIOR_A), (2, PRIOR_B)):
        posterior, npe[spec.name] = train_npe(spec, sizes, args.seed + offset,
                                              args.density_estimator)  # fmt: skip
        nll_npe, seconds = npe_nll(posterior, theta, x_BND)
        nll[f"npe_{spec.name.lower()}"] = nll_npe
        npe[spec.name]["infer_s"] = seconds / sizes.n_test
    nll["dt"], single = dt_single(est, PRIOR_B, theta, x_BND)
    nll_batched, batched_s = dt_batched(est, PRIOR_B, theta, x_BND, sizes.repeats)
    dt = {
        "single_median_s": statistics.median(single),
        "single_mean_s": mean_or_none(single),
        "batched_per_dataset_s": batched_s / sizes.n_test,
        "batched_vs_single_max_abs_nll": float((nll_batched - nll["dt"]).abs().max()),
        "dtype": str(est.dtype).removeprefix("torch."),
    }
    ratio = npe["B"]["total_s"] / dt["single_median_s"]
    gap = mean_se(nll["dt"] - nll["npe_b"])
    return {
        "config": vars(args),
        "sizes": asdict(sizes),
        "n_obs": N_OBS,
        "priors": {"A": asdict(PRIOR_A), "B": asdict(PRIOR_B)},
        "range_checks": checks,
        "prior_b_inside_trained_range": all(row["inside"] for row in checks),
        "npe": npe,
        "dt": dt,
        "nll": nll_summary(nll, nll["exact"]),
        "dt_minus_npe_b": gap,
        "targets": {
            "speed_ratio": ratio,
            "speed_target": SPEED_TARGET,
            "speed_met": ratio >= SPEED_TARGET,
            "nll_margin": NLL_MARGIN,
            "nll_met": gap["mean"] <= NLL_MARGIN,
        },
        "environment": {
            "torch": torch.__version__,
            "sbi": sbi.__version__,
            "torch_threads": torch.get_num_threads(),
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = SMOKE if args.smoke else FULL
    sizes = Sizes(
        budget=args.budget or base.budget,
        max_epochs=args.max_epochs or base.max_epochs,
        n_test=args.n_test or base.n_test,
        repeats=base.repeats,
    )
    console = Console(width=max(Console().width, 120))
    report = run(args, sizes, console)
    console.print(results_table(report, N_OBS))
    for name in ("A", "B"):
        rec = report["npe"][name]
        capped = "" if rec["converged"] else f", cut off by max_num_epochs={sizes.max_epochs}"
        console.print(
            f"NPE on prior {name}: simulate {rec['simulate_s']:.2f} s + train "
            f"{rec['train_s']:.1f} s = {rec['total_s']:.1f} s, {rec['epochs']} epochs{capped}"
        )
    console.print(
        f"DT per adaptation: median {1e3 * report['dt']['single_median_s']:.2f} ms per "
        f"posterior(prior_B, x) call; batched {1e3 * report['dt']['batched_per_dataset_s']:.3f} "
        f"ms per dataset; {report['environment']['torch_threads']} torch thread(s)"
    )
    console.print(verdict(report))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
