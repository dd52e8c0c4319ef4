"""Freeze-thaw BO against Hyperband and random search on the real learning-curve lookup table.

Side by side in one run, on every (dataset, model) table of benchmarks/data (built by
benchmarks/lc_data.py; see freeze_thaw_methods.py for the methods and what an epoch
costs, freeze_thaw_report.py for the regret and its area):

* freeze-thaw: `pfnkit.bo.FreezeThaw` on the exact freeze-thaw GP at the prior's default
  hyperparameters;
* freeze-thaw-pfn (with ``--checkpoint``, e.g. ft-gp): the same optimiser on a PFN trained
  on that prior (`pfnkit.bo.freeze_thaw_pfn.PFNFreezeThawSurrogate`, ifBO-style);
* hyperband: Optuna's HyperbandPruner over uniformly drawn configurations;
* random: random configurations, each trained to the last epoch.

By default the comparison is not even-handed: freeze-thaw runs on in-sample
hyperparameters (fitted on these tables by benchmarks/lc_fit.py, the very tables it is
scored on; the freeze-thaw prior of a PFN such as ft-gp defaults to the same ones), while
Hyperband and random search get no tuning. For the out-of-sample
comparison, pass ``--hyperparameters JSON`` as written by
``benchmarks/lc_fit.py --leave-one-out --out JSON``: each table is then run on the
hyperparameters fitted without it (exact GP only: it cannot be combined with
``--checkpoint``). The printed caption, the markdown and the JSON say which was used.

Every method gets the same budget of epochs (``--budget`` full runs' worth, × T) and the
same seeds. Printed per table and method: the area under the regret curve (mean regret
over the budget) ± its standard error over seeds, the final regret, and the surrogate's
seconds per decision.

    OMP_NUM_THREADS=1 python benchmarks/freeze_thaw.py --seeds 10 --budget 10 \\
        --checkpoint ft-gp --json ft.json --markdown --plot ft.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from freeze_thaw_methods import METHODS, run_method
from freeze_thaw_report import markdown_table, plot_regret, regret_curve, summarise
from lc_data import LookupBenchmark, load_learning_curves

from pfnkit.bo.freeze_thaw_pfn import PFNFreezeThawSurrogate
from pfnkit.bo.freeze_thaw_surrogate import ExactFreezeThawSurrogate
from pfnkit.reference.freeze_thaw import FreezeThawHyperparameters

SMOKE = {"benchmarks": ["wine-sgd", "digits-mlp"], "seeds": 2, "budget": 1}
IN_SAMPLE = "in-sample hyperparameters (fitted on these tables by benchmarks/lc_fit.py)"
OUT_OF_SAMPLE = "out-of-sample hyperparameters (each table's fitted on the others, from {path})"


DEFAULT_METHODS = ["freeze-thaw", "hyperband", "random"]  # + freeze-thaw-pfn with --checkpoint


def _held_out_surrogates(path: Path | None, names: list[str]) -> dict[str, Any]:
    """Per table, the exact surrogate at the hyperparameters lc_fit.py fitted without it."""
    if path is None:
        return {}
    fitted = json.loads(Path(path).read_text()).get("leave_one_out", {})
    missing = sorted(set(names) - set(fitted))
    if missing:
        raise SystemExit(f"{path} has no leave-one-out hyperparameters for {missing}; write them "
                         "with benchmarks/lc_fit.py --leave-one-out --out JSON")  # fmt: skip
    return {name: ExactFreezeThawSurrogate(FreezeThawHyperparameters.from_dict(fitted[name]))
            for name in names}  # fmt: skip


def _pfn_surrogate(
    checkpoint: str | None, benches: list[LookupBenchmark]
) -> PFNFreezeThawSurrogate | None:
    """The PFN of ``--checkpoint``; a table it was not trained for ends the run before it starts."""
    if checkpoint is None:
        return None
    pfn = PFNFreezeThawSurrogate(checkpoint)
    misfits = [
        b.name for b in benches if not pfn.num_dims_min <= b.configs.shape[1] <= pfn.num_dims
    ]
    if misfits:
        raise SystemExit(
            f"checkpoint {pfn.checkpoint.name!r} was trained on {pfn.num_dims_min} to "
            f"{pfn.num_dims} configuration features; tables {misfits} have another number: "
            "leave them out (--benchmarks)"
        )
    return pfn


def run_benchmark(
    bench: LookupBenchmark, methods: list[str], seeds: int, budget: int,
    surrogates: dict[str, Any] | None = None,
) -> tuple[dict[str, list[np.ndarray]], dict[str, list[float]]]:  # fmt: skip
    """Regret curves per method (one per seed) and each method's seconds per decision.

    `surrogates` maps freeze-thaw and freeze-thaw-pfn to their surrogates (None: exact GP).
    """
    surrogates = surrogates or {}
    curves: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    seconds: dict[str, list[float]] = {}
    for method in methods:
        for seed in range(seeds):
            trace = run_method(method, bench, seed, budget, surrogates.get(method))
            curves[method].append(regret_curve(trace.incumbent, bench, budget))
            if trace.decision_seconds:
                seconds.setdefault(method, []).extend(trace.decision_seconds)
    return curves, seconds


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmarks", nargs="+", default=None, help="table names (default all)")
    parser.add_argument("--methods", nargs="+", default=None, choices=list(METHODS),
                        help="default: all (freeze-thaw-pfn only with --checkpoint)")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=10, help="budget in full runs (x T epochs)")
    parser.add_argument("--checkpoint", default=None,
                        help="freeze-thaw PFN (e.g. ft-gp) of method freeze-thaw-pfn")  # fmt: skip
    parser.add_argument("--hyperparameters", type=Path, default=None,
                        help="per-table JSON of lc_fit.py --leave-one-out --out")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--plot", type=Path, default=None, help="write the regret curves here")
    parser.add_argument("--smoke", action="store_true", help="2 tables, 2 seeds, budget 1")
    args = parser.parse_args(argv)
    if args.hyperparameters is not None and args.checkpoint is not None:
        parser.error(
            "--hyperparameters sets the exact GP's; it cannot be combined with --checkpoint"
        )
    if args.methods is None:
        pfn = ["freeze-thaw-pfn"] if args.checkpoint is not None else []
        args.methods = DEFAULT_METHODS[:1] + pfn + DEFAULT_METHODS[1:]
    if ("freeze-thaw-pfn" in args.methods) != (args.checkpoint is not None):
        parser.error("method freeze-thaw-pfn and --checkpoint go together")
    if args.smoke:
        args.benchmarks = args.benchmarks or SMOKE["benchmarks"]
        args.seeds, args.budget = SMOKE["seeds"], SMOKE["budget"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    tables = load_learning_curves()
    names = args.benchmarks or sorted(tables)
    unknown = sorted(set(names) - set(tables))
    if unknown:
        raise SystemExit(f"unknown tables {unknown}; choose from {sorted(tables)}")
    pfn = _pfn_surrogate(args.checkpoint, [tables[name] for name in names])
    held_out = _held_out_surrogates(args.hyperparameters, names)
    caption = IN_SAMPLE if not held_out else OUT_OF_SAMPLE.format(path=args.hyperparameters)
    print(f"freeze-thaw on {caption}", flush=True)
    if pfn is not None:
        print(f"freeze-thaw-pfn on checkpoint {pfn.checkpoint.name!r}", flush=True)
    start = time.perf_counter()
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
              if k not in ("json", "plot")}  # fmt: skip
    results: dict[str, Any] = {"config": config, "hyperparameters": caption, "benchmarks": {}}
    if pfn is not None:
        card = pfn.checkpoint.card
        results["checkpoint"] = {"name": pfn.checkpoint.name, "sha256": card.get("sha256")}
    all_curves = {}
    for name in names:
        bench = tables[name]
        budget = args.budget * bench.max_epoch
        surrogates = {"freeze-thaw": held_out.get(name), "freeze-thaw-pfn": pfn}
        curves, seconds = run_benchmark(bench, args.methods, args.seeds, budget, surrogates)
        all_curves[name] = curves
        results["benchmarks"][name] = {
            "budget_epochs": budget,
            "best_final_error": float(bench.errors[:, -1].min()),
            "summary": summarise(curves, seconds),
            "mean_regret_curve": {
                m: np.mean(c, axis=0).round(6).tolist() for m, c in curves.items()
            },
        }
        row = ", ".join(f"{m} {s['area']:.4f}±{s['area_stderr']:.4f}"
                        for m, s in results["benchmarks"][name]["summary"].items())  # fmt: skip
        print(f"{name} (budget {budget} epochs, area = mean regret): {row}", flush=True)
    results["seconds"] = time.perf_counter() - start
    print(f"{len(names)} tables x {args.seeds} seeds in {results['seconds']:.0f} s")
    if args.markdown:
        print(markdown_table(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    if args.plot is not None:
        plot_regret(results, all_curves, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
