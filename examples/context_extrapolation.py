"""Contexts larger than trained: how a GP-hyperprior PFN behaves beyond its n_ctx_max.

A PFN learns the posterior predictive for the context sizes it was trained on (1 to 128
for the shipped `gp`). Attention has no positional limit, so larger contexts run, and
`PFNRegressor.fit` warns. This script measures what the user then gets: on fresh prior
tasks with d used features it scores, per query point,

* the PFN (one forward pass), and
* the oracle GP: the exact GP predictive at the task's true hyperparameters (which the
  prior drew and `batch.meta` records). No method can beat it on average, and the
  Bayes-optimal predictive approaches it as the context grows,

and reports the mean NLL gap PFN - oracle with its standard error over tasks. Up to
n_ctx_max the gap should shrink with the context; beyond it, growth of the gap is the
price of extrapolating.

Run:  python examples/context_extrapolation.py [--checkpoint gp] [--sizes 64,128,192,256,384]
          [--dims 1,3,10] [--tasks 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass

import torch

import priors
from pfnkit.checkpoint import Checkpoint, load_checkpoint
from pfnkit.data import Batch
from pfnkit.metrics import mean_or_none, stderr_or_none
from pfnkit.reference.exact_gp import GPHyperparameters, exact_gp_predictive


@dataclass(frozen=True)
class Row:
    """Scores of one (d, n_ctx) cell, in nats per query point."""

    d: int
    n_ctx: int
    beyond_training: bool
    pfn_nll: float
    oracle_nll: float
    gap: float
    gap_stderr: float


def _oracle_nll(batch: Batch, index: int, d: int, kernel: str) -> float:
    """Mean NLL of the exact GP at task `index`'s true hyperparameters (used features only)."""
    meta = batch.meta
    hyper = GPHyperparameters(
        lengthscale=meta["lengthscale"][index, :d].double(),
        outputscale=float(meta["outputscale"][index]),
        noise=float(meta["noise"][index]),
        kernel=kernel,
    )
    x_ctx, x_qry = batch.x_ctx[index, :, :d].double(), batch.x_qry[index, :, :d].double()
    predictive = exact_gp_predictive(x_ctx, batch.y_ctx[index].double(), x_qry, hyper)
    return float(-predictive.log_prob(batch.y_qry[index].double()).mean())


def measure(
    ckpt: Checkpoint,
    *,
    sizes: tuple[int, ...] = (64, 128, 192, 256, 384),
    dims: tuple[int, ...] = (1, 3, 10),
    n_tasks: int = 64,
    n_qry: int = 100,
    seed: int = 7,
) -> list[Row]:
    """PFN vs oracle GP on `n_tasks` fresh tasks per (d, n_ctx) cell."""
    prior = priors.make_prior(ckpt.card["prior_name"], ckpt.card["prior_config"])
    if not getattr(prior.config, "has_hyperpriors", False):
        raise ValueError(f"{ckpt.name!r} is not a GP-hyperprior checkpoint")
    n_max = ckpt.trained_n_ctx_max
    generator = torch.Generator().manual_seed(seed)
    model = ckpt.model.eval()
    rows = []
    for d in dims:
        for n_ctx in sizes:
            batch = prior.sample(n_tasks, n_ctx, n_qry, generator=generator,
                                 num_used_features=d)  # fmt: skip
            with torch.inference_mode():
                pfn_B = -model(batch.x_ctx, batch.y_ctx, batch.x_qry).log_prob(batch.y_qry)
            pfn = pfn_B.double().mean(dim=1).tolist()
            oracle = [_oracle_nll(batch, i, d, prior.config.kernel) for i in range(n_tasks)]
            gaps = [p - o for p, o in zip(pfn, oracle, strict=True)]
            rows.append(Row(
                d=d, n_ctx=n_ctx, beyond_training=n_ctx > n_max,
                pfn_nll=mean_or_none(pfn), oracle_nll=mean_or_none(oracle),
                gap=mean_or_none(gaps), gap_stderr=stderr_or_none(gaps) or math.nan,
            ))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="gp")
    parser.add_argument("--sizes", default="64,128,192,256,384")
    parser.add_argument("--dims", default="1,3,10")
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--json", help="write the rows to this JSON file")
    args = parser.parse_args(argv)
    ckpt = load_checkpoint(args.checkpoint)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    dims = tuple(int(d) for d in args.dims.split(","))
    rows = measure(ckpt, sizes=sizes, dims=dims, n_tasks=args.tasks)
    print(f"{ckpt.name}: trained on contexts of up to {ckpt.trained_n_ctx_max} points; "
          f"{args.tasks} tasks per cell, NLL in nats per query point")  # fmt: skip
    print("| d | n_ctx | PFN NLL | oracle GP NLL | PFN - oracle |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        mark = " (beyond training)" if r.beyond_training else ""
        print(f"| {r.d} | {r.n_ctx}{mark} | {r.pfn_nll:.3f} | {r.oracle_nll:.3f} | "
              f"{r.gap:+.3f} ± {r.gap_stderr:.3f} |")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
