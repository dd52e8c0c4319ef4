"""Freeze-thaw quickstart: decide which training run to continue, and extrapolate one curve.

Run:  python examples/freeze_thaw_quickstart.py [--budget 300] [--checkpoint lc-curve] [--smoke]
      python examples/freeze_thaw_quickstart.py --table wine-mlp --surrogate ft-gp

Part 1 drives `pfnkit.bo.FreezeThaw` (Swersky et al., arXiv 1406.3896) on the shipped real
learning curves (benchmarks/data/learning_curves.csv.gz; by default SGDClassifier on wine,
54 configurations x 50 epochs; "training" a configuration one more epoch reads the table):
`ask` which configuration to train up to which epoch, `tell` the validation error seen
there, and `best` the incumbent, within a budget of epochs. Its surrogate is the exact
freeze-thaw GP, or with ``--surrogate ft-gp`` a PFN trained on the freeze-thaw prior, as in
ifBO (arXiv 2404.16795): ``FreezeThaw(configs, T, surrogate="ft-gp")``. ft-gp reads 4-D
configurations, so it runs on the MLP tables (``--table wine-mlp``); the SGD ones are 3-D.
Part 2 extrapolates one partial curve with a single-curve PFN
(`pfnkit.bo.freeze_thaw_extrapolate`, LC-PFN-style, arXiv 2310.20447): the predicted final
error and the chance that it beats a threshold, the question an early-stopping rule asks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from pfnkit.bo import FreezeThaw
from pfnkit.bo.freeze_thaw_extrapolate import DEFAULT_CURVE_CHECKPOINT, extrapolate_curve
from pfnkit.checkpoint import load_checkpoint

TABLE = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "learning_curves.csv.gz"


TABLES = [
    f"{data}-{model}" for data in ("breast_cancer", "digits", "wine") for model in ("mlp", "sgd")
]


def load_table(name: str = "wine-sgd") -> tuple[np.ndarray, np.ndarray]:
    """Configurations in the unit cube (n, d) and validation errors per epoch (n, T).

    The MLP grids have d = 4 hyperparameters (columns x0..x3), the SGD grids d = 3.
    """
    frame = pd.read_csv(TABLE)
    rows = frame[frame["benchmark"] == name]
    errors = rows[[c for c in rows.columns if c.startswith("err_")]].to_numpy(float)
    dims = 4 if name.endswith("-mlp") else 3
    return rows[[f"x{i}" for i in range(dims)]].to_numpy(float), errors


def freeze_thaw(configs: np.ndarray, errors: np.ndarray, budget: int, surrogate: str) -> None:
    """Spend `budget` epochs as FreezeThaw decides; print the incumbent against the table's best.

    `surrogate`: "exact" (the freeze-thaw GP) or a freeze-thaw PFN checkpoint such as ft-gp.
    """
    chosen = None if surrogate == "exact" else surrogate
    ft = FreezeThaw(configs, max_epoch=errors.shape[1], seed=0, surrogate=chosen)
    trained = np.zeros(len(configs), dtype=int)  # epochs each configuration has run
    spent = 0
    while spent < budget:
        i, epoch = ft.ask()
        for t in range(trained[i] + 1, epoch + 1):  # train configuration i up to `epoch`
            ft.tell(i, t, float(errors[i, t - 1]))
        spent += epoch - trained[i]
        trained[i] = epoch
    i_best, value = ft.best()
    print(f"freeze-thaw ({surrogate}): {spent} epochs over {np.count_nonzero(trained)} of "
          f"{len(configs)} configurations; best error {value:.4f} (configuration {i_best}); "
          f"the table's best final error is {errors[:, -1].min():.4f}")  # fmt: skip


def extrapolate(errors: np.ndarray, k: int, checkpoint: str) -> None:
    """Forecast the final epoch of the table's slowest-starting curve from its first k epochs."""
    curve = errors[int(np.argmax(errors[:, 0]))]
    threshold = float(np.median(errors[:, -1]))
    forecast = extrapolate_curve(load_checkpoint(checkpoint), curve[:k], threshold=threshold)
    low, median, high = forecast.quantiles[-1]
    print(f"extrapolation after {k} epochs: final error {median:.3f} (90% interval "
          f"{low:.3f} to {high:.3f}; observed {curve[-1]:.3f}); P(final < {threshold:.3f}) = "
          f"{forecast.prob_below_threshold:.2f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=300, help="epochs FreezeThaw may spend")
    parser.add_argument("--observed", type=int, default=5, help="epochs seen before extrapolating")
    parser.add_argument("--checkpoint", default=DEFAULT_CURVE_CHECKPOINT,
                        help="single-curve PFN for part 2")  # fmt: skip
    parser.add_argument("--table", default="wine-sgd", choices=TABLES, help="part 1's table")
    parser.add_argument("--surrogate", default="exact",
                        help="part 1: 'exact' (GP) or a freeze-thaw PFN, e.g. ft-gp")  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="tiny budget for the test suite")
    args = parser.parse_args(argv)
    configs, errors = load_table(args.table)
    freeze_thaw(configs, errors, 20 if args.smoke else args.budget, args.surrogate)
    extrapolate(errors, args.observed, args.checkpoint)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
