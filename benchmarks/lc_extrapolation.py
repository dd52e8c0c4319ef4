"""Single-curve extrapolation on the real learning curves: PFN, MCMC and a power-law fit.

Issue 18, item 5: the NLL of a curve's final epoch given its first k epochs, on the real
curves of benchmarks/data/learning_curves.csv.gz (benchmarks/lc_data.py: 648 scikit-learn
runs of 50 epochs), for three methods (benchmarks/lc_extrapolation_methods.py):

* pfn: the single-curve checkpoint ``--checkpoint`` (default ``lc-curve``), every curve;
* mcmc: Monte Carlo over the posterior of the parametric families of the checkpoint's own
  prior (its log-joint), on ``--mcmc-curves`` curves per table (a seeded draw): tempered
  SMC with Metropolis moves (``--mcmc smc``, the default; the `lc-smc` validator's
  reference, 15-40 s per curve and k) or NUTS (``--mcmc nuts``, minutes per curve, and its
  chains rarely agree on pinned curves, where the family weights are multimodal);
* power-law: least squares a + b t^(−c) with a Gaussian residual, every curve, k ≥ 4.

Reported per k: each method's mean NLL (nats) ± its standard error over curves and its
time per curve (fit + predict), the PFN and MCMC again on the very curves MCMC ran on (the
paired comparison), and how many of those runs passed their gate (SMC: the runs reach
β = 1 and agree; NUTS: R-hat and ESS). Real errors are discrete (steps of 1/54 to 1/540),
so a density can exceed one and an NLL be negative. ``--reuse-mcmc`` takes the reference
runs of an earlier ``--json`` file, so a new checkpoint is scored without repeating them.

    OMP_NUM_THREADS=1 python benchmarks/lc_extrapolation.py --json lc.json --markdown \\
        --plot lc.png

The defaults (4 values of k, one SMC curve per table: 24 runs) take about 20 minutes on one
shared core (SMC: 30-75 s per curve and k, longer at larger k); the PFN and the power law
on all 648 curves take about a minute.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from lc_data import load_learning_curves
from lc_extrapolation_methods import (
    POWER_LAW_MIN_EPOCHS,
    Score,
    curve_task,
    mcmc_log_prob,
    pfn_log_prob,
    power_law_log_prob,
)

from pfnkit.figures import pyplot, save_figure
from pfnkit.reference.lc_posterior import DEFAULT_LC_NUTS, curve_posterior, require_curve_prior
from pfnkit.reference.lc_smc import DEFAULT_LC_SMC, curve_posterior_smc

SMOKE = {"ks": [5, 10], "curves": 2, "mcmc_curves": 1, "chains": 1, "warmup": 5, "samples": 8,
         "depth": 3, "tables": ["wine-sgd", "digits-mlp"]}  # fmt: skip
SMOKE_SMC = {"particles": 64, "min_moves": 2, "max_moves": 4, "max_temperatures": 60}
MCMC_LABELS = {"smc": "tempered SMC", "nuts": "NUTS"}
METHODS = ("pfn", "power-law", "pfn@mcmc", "mcmc")  # pfn@mcmc: the PFN on MCMC's curves


def _load(checkpoint: str) -> tuple[Any, Any]:
    """The checkpoint's model and its prior (rebuilt from the card), which MCMC samples."""
    import priors
    from pfnkit.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    prior = priors.make_prior(ckpt.card["prior_name"], ckpt.card["prior_config"])
    return ckpt.model.eval(), require_curve_prior(prior, f"checkpoint {checkpoint!r}")


def _curves(tables: dict, names: list[str], limit: int | None, mcmc: int, seed: int) -> list:
    """(table, row, errors, runs MCMC) per curve: `limit` per table (all when None)."""
    rng = np.random.default_rng(seed)
    out = []
    for name in names:
        errors = tables[name].errors
        order = rng.permutation(len(errors))[: limit or len(errors)]
        out += [(name, int(i), errors[i], rank < mcmc) for rank, i in enumerate(order)]
    return out


def score_k(
    model: Any, prior: Any, curves: list, k: int, mcmc: Any, seed: int, reuse: dict | None = None
) -> dict:
    """Every method's per-curve scores at one k (lists of `Score` per method).

    `mcmc(prior, task, seed)` is the Monte Carlo reference's `Score`; a run already in
    `reuse` (keyed by table, row, k and seed; `reusable_runs`) is taken from there.
    """
    max_epoch, reuse = prior.config.max_epoch, reuse or {}
    scores: dict[str, list[Score]] = {m: [] for m in METHODS}
    rows = []
    for index, (name, row, errors, with_mcmc) in enumerate(curves):
        task = curve_task(errors, k, max_epoch, max_epoch)
        pfn = pfn_log_prob(model, task)
        scores["pfn"].append(pfn)
        if k >= POWER_LAW_MIN_EPOCHS:
            scores["power-law"].append(power_law_log_prob(errors, k, max_epoch))
        if with_mcmc:
            key = (name, row, k, seed + index)
            reference = reuse[key] if key in reuse else mcmc(prior, task, seed + index)
            scores["pfn@mcmc"].append(pfn)
            scores["mcmc"].append(reference)
            rows.append({"table": name, "row": row, "pfn_nll": -pfn.log_prob,
                         "mcmc_nll": -reference.log_prob, "mcmc_trusted": reference.trusted,
                         "mcmc_seconds": reference.seconds, "mcmc_seed": seed + index})  # fmt: skip
    return {"scores": scores, "mcmc_curves": rows}


def reusable_runs(path: Path, config: dict[str, Any]) -> dict[tuple, Score]:
    """The Monte Carlo runs of an earlier results file, if they answer this run's question.

    A run depends only on the prior, the curve, k, the reference's budget and its seed, so
    it is reused when the file's prior config, reference and budget equal `config`'s (the
    checkpoint may differ: that is the point). Its seconds are those measured then.

    Raises:
        SystemExit: the file's prior, reference or budget differ.
    """
    old = json.loads(path.read_text())
    fields = ("prior_config", "mcmc", config["mcmc"])
    now = json.loads(json.dumps({f: config.get(f) for f in fields}))  # tuples become lists
    differ = [f for f in fields if old["config"].get(f) != now[f]]
    if differ:
        raise SystemExit(f"--reuse-mcmc {path}: its {differ} differ from this run's")
    runs = old["ks"]
    return {
        (c["table"], c["row"], int(k), c["mcmc_seed"]): Score(
            -c["mcmc_nll"], c["mcmc_seconds"], c["mcmc_trusted"]
        )
        for k, entry in runs.items()
        for c in entry["mcmc_curves"]
        if "mcmc_seed" in c
    }


def summarise(scores: list[Score]) -> dict[str, Any] | None:
    """Mean NLL ± standard error, seconds per curve and the trusted count; None if empty."""
    if not scores:
        return None
    nll = -np.array([s.log_prob for s in scores])
    stderr = float(nll.std(ddof=1) / np.sqrt(len(nll))) if len(nll) > 1 else 0.0
    return {"nll": float(nll.mean()), "nll_stderr": stderr, "n": len(nll),
            "trusted": sum(s.trusted for s in scores),
            "seconds_per_curve": float(np.mean([s.seconds for s in scores]))}  # fmt: skip


def _show(summary: dict | None) -> str:
    """Mean NLL ± standard error, or "-" where the method did not run."""
    return "-" if summary is None else f"{summary['nll']:.3f} ± {summary['nll_stderr']:.3f}"


def markdown_table(results: dict[str, Any]) -> str:
    """Per k: NLL of each method, the MCMC subset's pair, trusted runs and times per curve."""
    mcmc = MCMC_LABELS[results["config"].get("mcmc", "nuts")]
    head = (f"| k | PFN | power law | PFN ({mcmc}'s curves) | {mcmc} | {mcmc} trusted | "
            f"PFN ms/curve | power law ms/curve | {mcmc} s/curve |")  # fmt: skip
    lines = [head, "|" + "---:|" * 9]
    for k, entry in results["ks"].items():
        m = entry["methods"]
        ms = lambda name, scale, m=m: (  # noqa: E731
            "-" if m[name] is None else f"{scale * m[name]['seconds_per_curve']:.2f}"
        )
        trusted = "-" if m["mcmc"] is None else f"{m['mcmc']['trusted']}/{m['mcmc']['n']}"
        lines.append(f"| {k} | {_show(m['pfn'])} | {_show(m['power-law'])} | "
                     f"{_show(m['pfn@mcmc'])} | {_show(m['mcmc'])} | {trusted} | "
                     f"{ms('pfn', 1e3)} | {ms('power-law', 1e3)} | {ms('mcmc', 1)} |")  # fmt: skip
    return "\n".join(lines)


def plot_nll(results: dict[str, Any], path: Path) -> Path:
    """NLL of the final epoch against k, one line per method (± standard error)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ks = [int(k) for k in results["ks"]]
    mcmc = MCMC_LABELS[results["config"].get("mcmc", "nuts")]
    labels = {"pfn": f"PFN ({results['config']['checkpoint']})", "power-law": "power law (LSQ)",
              "pfn@mcmc": f"PFN, {mcmc}'s curves", "mcmc": f"{mcmc}, parametric"}  # fmt: skip
    styles = {"pfn": "s-", "power-law": "^-", "pfn@mcmc": "s:", "mcmc": "o:"}
    for method in METHODS:
        rows = [(k, e["methods"][method]) for k, e in zip(ks, results["ks"].values(), strict=True)
                if e["methods"][method] is not None]  # fmt: skip
        if rows:
            ax.errorbar([k for k, _ in rows], [s["nll"] for _, s in rows],
                        yerr=[s["nll_stderr"] for _, s in rows], fmt=styles[method],
                        label=labels[method], capsize=3)  # fmt: skip
    # symlog: the power law's NLL from few epochs is hundreds of nats, the others a few
    ax.set(xscale="log", yscale="symlog", xlabel="observed epochs k",
           ylabel=f"NLL of epoch {results['config']['target_epoch']} (nats, symlog)")  # fmt: skip
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="lc-curve", help="single-curve PFN checkpoint")
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 10, 20, 40])
    parser.add_argument("--tables", nargs="+", default=None, help="table names (default all)")
    parser.add_argument("--curves", type=int, default=None, help="curves per table (default all)")
    parser.add_argument("--mcmc", choices=sorted(MCMC_LABELS), default="smc",
                        help="the Monte Carlo reference (default smc)")  # fmt: skip
    parser.add_argument("--mcmc-curves", type=int, default=1,
                        help="curves per table with the Monte Carlo reference")  # fmt: skip
    parser.add_argument("--nuts-chains", type=int, default=DEFAULT_LC_NUTS.num_chains)
    parser.add_argument("--nuts-warmup", type=int, default=DEFAULT_LC_NUTS.warmup)
    parser.add_argument("--nuts-samples", type=int, default=DEFAULT_LC_NUTS.num_samples)
    parser.add_argument("--nuts-max-tree-depth", type=int, default=DEFAULT_LC_NUTS.max_tree_depth)
    parser.add_argument("--seed", type=int, default=0,
                        help="which curves get the Monte Carlo reference; its seeds")  # fmt: skip
    parser.add_argument("--reuse-mcmc", type=Path, default=None,
                        help="an earlier --json file whose reference runs (same prior, "
                        "reference, budget, curve, k and seed) are reused")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--plot", type=Path, default=None, help="write NLL against k here")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="2 tables, 2 curves each, k = 5, 10, a tiny SMC (or a 13-step NUTS chain) on one",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.ks, args.curves, args.mcmc_curves = SMOKE["ks"], SMOKE["curves"], SMOKE["mcmc_curves"]
        args.nuts_warmup, args.nuts_samples = SMOKE["warmup"], SMOKE["samples"]
        args.nuts_max_tree_depth, args.nuts_chains = SMOKE["depth"], SMOKE["chains"]
        args.tables = args.tables or SMOKE["tables"]
    if min(args.ks) < 1:
        parser.error(f"every k must be at least 1, got {args.ks}")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Score every method at every k; the results as plain data."""
    model, prior = _load(args.checkpoint)
    tables = load_learning_curves()
    names = args.tables or sorted(tables)
    unknown = sorted(set(names) - set(tables))
    if unknown:
        raise SystemExit(f"unknown tables {unknown}; choose from {sorted(tables)}")
    max_epoch = prior.config.max_epoch
    if any(tables[n].max_epoch != max_epoch for n in names) or max(args.ks) >= max_epoch:
        raise SystemExit(f"the checkpoint's prior has {max_epoch} epochs; the tables need the "
                         f"same, and every k must be below it (got {args.ks})")  # fmt: skip
    if args.mcmc == "nuts":
        budget = dataclasses.replace(DEFAULT_LC_NUTS, num_chains=args.nuts_chains,
                                     warmup=args.nuts_warmup, num_samples=args.nuts_samples,
                                     max_tree_depth=args.nuts_max_tree_depth)  # fmt: skip
        posterior_fn = functools.partial(curve_posterior, nuts=budget)
    else:
        budget = dataclasses.replace(DEFAULT_LC_SMC, **(SMOKE_SMC if args.smoke else {}))
        posterior_fn = functools.partial(curve_posterior_smc, smc=budget)
    mcmc = functools.partial(mcmc_log_prob, posterior_fn)
    curves = _curves(tables, names, args.curves, args.mcmc_curves, args.seed)
    pfn_log_prob(model, curve_task(curves[0][2], 1, max_epoch, max_epoch))  # warm-up, untimed
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
              if k not in ("json", "plot")}  # fmt: skip
    config |= {"target_epoch": max_epoch, "n_curves": len(curves), args.mcmc: budget.to_dict(),
               "prior_config": prior.config.to_dict()}  # fmt: skip
    reuse = None if args.reuse_mcmc is None else reusable_runs(args.reuse_mcmc, config)
    results: dict[str, Any] = {"config": config, "ks": {}}
    for k in args.ks:
        scored = score_k(model, prior, curves, k, mcmc, args.seed, reuse)
        methods = {m: summarise(s) for m, s in scored["scores"].items()}
        results["ks"][str(k)] = {"methods": methods, "mcmc_curves": scored["mcmc_curves"]}
        print(f"k = {k}: " + ", ".join(f"{m} {s['nll']:.3f}" for m, s in methods.items() if s),
              flush=True)  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    start = time.perf_counter()
    results = run(args)
    results["seconds"] = time.perf_counter() - start
    print(f"{results['config']['n_curves']} curves x {len(args.ks)} k in "
          f"{results['seconds']:.0f} s")  # fmt: skip
    if args.markdown:
        print(markdown_table(results))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    if args.plot is not None:
        plot_nll(results, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
