"""Quickstart: Bayesian GP regression in one forward pass with the shipped `gp-rbf` checkpoint.

Run:  python examples/quickstart.py [--plot out/quickstart.png] [--smoke]
"""

from __future__ import annotations

import argparse

import numpy as np

from pfnkit.estimators import PFNRegressor


def make_data(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A smooth function on [0, 1] with noise std 0.1: the domain `gp-rbf` was trained on."""
    x = rng.uniform(0, 1, size=(n, 1))
    y = np.sin(2 * np.pi * x[:, 0]) + 0.5 * np.cos(5 * x[:, 0]) + 0.1 * rng.standard_normal(n)
    return x, y


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plot", help="write a PNG of the predictive to this path")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    x_train, y_train = make_data(6 if args.smoke else 15, rng)
    reg = PFNRegressor(checkpoint="gp-rbf").fit(x_train, y_train)

    x_test = np.linspace(0, 1, 9).reshape(-1, 1)
    mean = reg.predict(x_test)
    lo, median, hi = reg.predict_quantiles(x_test, [0.05, 0.5, 0.95]).T
    print(f"PFNRegressor(checkpoint='gp-rbf') fit on {len(x_train)} points")
    print(f"{'x':>6} {'mean':>8} {'median':>8} {'90% interval':>20}")
    for x, m, md, a, b in zip(x_test[:, 0], mean, median, lo, hi, strict=True):
        print(f"{x:6.3f} {m:8.3f} {md:8.3f}   [{a:7.3f}, {b:7.3f}]")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        grid = np.linspace(0, 1, 300).reshape(-1, 1)
        q = reg.predict_quantiles(grid, [0.05, 0.25, 0.75, 0.95])
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.fill_between(grid[:, 0], q[:, 0], q[:, 3], alpha=0.2, color="tab:orange", label="90%")
        ax.fill_between(grid[:, 0], q[:, 1], q[:, 2], alpha=0.3, color="tab:orange", label="50%")
        ax.plot(grid[:, 0], reg.predict(grid), color="tab:orange", label="predictive mean")
        ax.scatter(x_train[:, 0], y_train, color="black", s=15, zorder=3, label="training data")
        ax.set(xlabel="x", ylabel="y", title="PFNRegressor(checkpoint='gp-rbf')")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
