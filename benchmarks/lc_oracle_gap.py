"""Where a single-curve PFN loses: its NLL against the oracle that knows each curve's θ.

Run:  OMP_NUM_THREADS=1 python benchmarks/lc_oracle_gap.py [--checkpoints lc-curve,PATH]
          [--tasks 1024] [--n-ctx 2,5,10,20,40] [--n-qry 10] [--seed 0] [--json out.json]
          [--markdown] [--smoke]

Tasks are drawn from the checkpoints' own learning-curve prior (the first card's
``prior_name``/``prior_config``; every checkpoint must share it): a curve observed on
epochs 1..k, queried at n_qry later epochs. Each task is scored by the mean NLL of the
query values under the PFN minus that under the curve's true parameters θ, N(curve(t; θ), σ²)
(the oracle). Over the prior, no predictive given only the data beats the oracle on
average (H(y | D) ≥ H(y | D, θ)), so the mean gap is

    PFN to exact posterior  +  exact posterior to oracle,

both non-negative on average: an upper bound on what the PFN loses to exact inference, tight
where the context pins θ down (many epochs, low noise). Unlike the SMC validation
(`python cli.py validate --checkpoint lc-curve`, 15–45 s per task), it costs one forward
pass per task, so a thousand tasks per size compare two checkpoints on the very same
curves. Printed per k: the mean gap ± its standard error, and the mean gap within each
quarter of the tasks' noise σ (the least noisy quarter first).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch.distributions import Normal

from pfnkit.checkpoint import load_checkpoint
from priors import make_prior
from priors.learning_curves_parametric import ParametricCurvePrior

SMOKE = {"tasks": 8, "n_ctx": "3,10", "n_qry": 4}
N_NOISE_BINS = 4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", default="lc-curve", help="names or paths, comma-separated")
    p.add_argument("--tasks", type=int, default=1024, help="curves per context size")
    p.add_argument("--n-ctx", default="2,5,10,20,40", help="observed epochs, comma-separated")
    p.add_argument("--n-qry", type=int, default=10, help="query epochs per curve")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the gaps to this file")
    p.add_argument("--markdown", action="store_true", help="also print a markdown table")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for the tests")
    args = p.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    args.checkpoints = [c for c in args.checkpoints.split(",") if c]
    if len(set(args.checkpoints)) != len(args.checkpoints):
        raise SystemExit(f"--checkpoints names a checkpoint twice: {args.checkpoints}")
    args.n_ctx = [int(k) for k in str(args.n_ctx).split(",") if k]
    if args.tasks < N_NOISE_BINS:
        raise SystemExit(f"--tasks must be at least {N_NOISE_BINS} (one per noise quarter)")
    return args


def curve_prior(cards: list[dict]) -> ParametricCurvePrior:
    """The learning-curve prior every checkpoint was trained on (one prior, or an error)."""
    first = cards[0]
    for card in cards[1:]:
        if (card["prior_name"], card["prior_config"]) != (
            first["prior_name"],
            first["prior_config"],
        ):
            raise SystemExit(
                f"checkpoints {first['name']!r} and {card['name']!r} were trained on different "
                "priors; the gaps would not be paired"
            )
    prior = make_prior(first["prior_name"], first["prior_config"])
    if not isinstance(prior, ParametricCurvePrior):
        raise SystemExit(
            f"{first['name']!r} was trained on prior {first['prior_name']!r}; this benchmark "
            "needs the single-curve prior 'lc-parametric' (its tasks carry their θ)"
        )
    return prior


def oracle_nll(prior: ParametricCurvePrior, params_BP: torch.Tensor, x_BM: torch.Tensor,
               y_BM: torch.Tensor) -> np.ndarray:  # fmt: skip
    """Per-task mean NLL of y at epoch fractions x under the true θ, shape (B,)."""
    params = params_BP.double()
    t_BM = torch.round(x_BM.double() * prior.config.max_epoch).long()
    curve_BT = prior.mean_curve(params, prior.epochs(params))
    mean_BM = torch.gather(curve_BT, 1, t_BM - 1)
    return (-Normal(mean_BM, params[:, -1:]).log_prob(y_BM.double())).mean(-1).numpy()


def pfn_nll(model: torch.nn.Module, batch) -> np.ndarray:  # noqa: ANN001
    """Per-task mean NLL of the query values under the PFN, shape (B,)."""
    with torch.inference_mode():
        dist = model.predict_from_cache(model.encode_context(batch.x_ctx, batch.y_ctx),
                                        batch.x_qry)  # fmt: skip
        return (-dist.log_prob(batch.y_qry)).double().mean(-1).numpy()


def noise_bins(sigma_B: np.ndarray) -> np.ndarray:
    """Each task's quarter of the noise σ among these tasks: 0 (least noisy) to 3."""
    edges = np.quantile(sigma_B, np.linspace(0, 1, N_NOISE_BINS + 1)[1:-1])
    return np.searchsorted(edges, sigma_B, side="right")


def summarize(gaps_B: np.ndarray, bins_B: np.ndarray) -> dict:
    return {
        "mean": float(gaps_B.mean()),
        "se": float(gaps_B.std(ddof=1) / math.sqrt(len(gaps_B))),  # parse_args: ≥ 4 tasks
        "by_noise_quarter": [float(gaps_B[bins_B == q].mean()) for q in range(N_NOISE_BINS)],
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    checkpoints = [load_checkpoint(name) for name in args.checkpoints]
    prior = curve_prior([c.card for c in checkpoints])
    for ckpt in checkpoints:
        ckpt.model.eval()
    rows: dict[int, dict] = {}
    for n_ctx in args.n_ctx:
        generator = torch.Generator().manual_seed(args.seed * 1000 + n_ctx)
        batch = prior.sample(args.tasks, n_ctx, args.n_qry, generator=generator)
        params = batch.meta["params"]
        oracle = oracle_nll(prior, params, batch.x_qry[..., 0], batch.y_qry)
        sigma = params[:, -1].double().numpy()
        bins = noise_bins(sigma)
        gaps = {name: pfn_nll(c.model, batch) - oracle
                for name, c in zip(args.checkpoints, checkpoints, strict=True)}  # fmt: skip
        first = gaps[args.checkpoints[0]]
        rows[n_ctx] = {
            "oracle_nll": float(oracle.mean()),
            "sigma_quarter_medians": [
                float(np.median(sigma[bins == q])) for q in range(N_NOISE_BINS)
            ],
            "gaps": {name: summarize(g, bins) for name, g in gaps.items()},
            # each checkpoint's per-task gap minus the first's, on the same curves
            "paired_vs_first": {
                name: summarize(g - first, bins) for name, g in list(gaps.items())[1:]
            },
        }
    out = {
        "command": " ".join(["python", "benchmarks/lc_oracle_gap.py", *(argv or sys.argv[1:])]),
        "prior": checkpoints[0].card["prior_name"],
        "tasks": args.tasks,
        "n_qry": args.n_qry,
        "rows": rows,
        "mean_gap": {
            name: float(np.mean([r["gaps"][name]["mean"] for r in rows.values()]))
            for name in args.checkpoints
        },
    }
    report(out, args.markdown)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


def report(out: dict, markdown: bool) -> None:
    console = Console(width=max(Console().width, 110))
    names = list(out["mean_gap"])
    table = Table(title=f"NLL gap to the oracle (nats per point), {out['tasks']} curves per k")
    table.add_column("k")
    table.add_column("oracle NLL")
    for name in names:
        table.add_column(f"{name}: gap ± se")
        table.add_column("by noise quarter (low → high σ)")
    lines = ["| k | oracle NLL | " + " | ".join(f"{n} gap ± se | by σ quarter" for n in names)
             + " |", "|---" * (2 + 2 * len(names)) + "|"]  # fmt: skip
    for n_ctx, row in out["rows"].items():
        cells = [str(n_ctx), f"{row['oracle_nll']:+.3f}"]
        for name in names:
            g = row["gaps"][name]
            cells += [
                f"{g['mean']:+.3f} ± {g['se']:.3f}",
                " / ".join(f"{v:+.2f}" for v in g["by_noise_quarter"]),
            ]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    console.print(table)
    for name, gap in out["mean_gap"].items():
        console.print(f"{name}: mean gap over k {gap:+.3f} nats", highlight=False)
    for name in names[1:]:
        paired = ", ".join(f"k={k} {row['paired_vs_first'][name]['mean']:+.3f} ± "
                           f"{row['paired_vs_first'][name]['se']:.3f}"
                           for k, row in out["rows"].items())  # fmt: skip
        console.print(f"{name} minus {names[0]} on the same curves: {paired}", highlight=False)
    if markdown:
        console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


if __name__ == "__main__":
    main()
