"""Summaries and rich tables of `dt_vs_npe.py`'s report (means, paired gaps, verdict)."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from torch import Tensor

from pfnkit.metrics import mean_or_none, stderr_or_none

SPEED_TARGET = 1e4  # NPE retraining time / DT time per adaptation
NLL_MARGIN = 0.1  # nats the DT's mean NLL may exceed the retrained NPE's


def mean_se(values: Tensor) -> dict[str, float | None]:
    """Mean over test datasets and its standard error (None for fewer than two datasets)."""
    listed = values.tolist()
    return {"mean": mean_or_none(listed), "se": stderr_or_none(listed)}


def _plus_minus(figure: dict[str, float | None], spec: str) -> str:
    se = "-" if figure["se"] is None else f"{figure['se']:.3f}"
    return f"{figure['mean']:{spec}} ± {se}"


def nll_summary(nll: dict[str, Tensor], exact: Tensor) -> dict[str, dict[str, Any]]:
    """Mean NLL per method and its paired difference from the exact posterior's."""
    return {name: {"nll": mean_se(v), "minus_exact": mean_se(v - exact)} for name, v in nll.items()}


def checks_table(checks: list[dict[str, Any]], checkpoint: str) -> Table:
    inside = all(row["inside"] for row in checks)
    table = Table(title=f"Prior B against checkpoint {checkpoint}'s trained range")
    for column in checks[0]:
        table.add_column(column)
    for row in checks:
        table.add_row(
            *(("yes" if v else "NO") if k == "inside" else str(v) for k, v in row.items())
        )
    table.caption = f"prior B {'lies inside' if inside else 'is OUTSIDE'} the trained range"
    return table


def results_table(report: dict[str, Any], n_obs: int) -> Table:
    npe_a, npe_b, dt = report["npe"]["A"], report["npe"]["B"], report["dt"]
    sizes = report["sizes"]
    table = Table(title=f"Adapting to prior B: {sizes['n_test']} test datasets, N={n_obs}")
    for column in ("method", "adapt to prior B", "infer ms / dataset", "mean NLL", "NLL - exact"):
        table.add_column(column, justify="left" if column == "method" else "right")
    adapt_b = f"{npe_b['total_s']:.1f} s ({npe_b['epochs']} epochs)"
    rows = [
        ("exact conjugate posterior", "closed form", None, "exact"),
        ("DT, prior B as input", f"{1e3 * dt['single_median_s']:.2f} ms (1 pass)",
         dt["batched_per_dataset_s"], "dt"),
        (f"NPE retrained on B ({sizes['budget']:,} sims)", adapt_b, npe_b["infer_s"], "npe_b"),
        ("NPE trained on A (stale)", "none", npe_a["infer_s"], "npe_a"),
    ]  # fmt: skip
    for label, adapt, infer_s, key in rows:
        nll, gap = report["nll"][key]["nll"], report["nll"][key]["minus_exact"]
        table.add_row(label, adapt, "" if infer_s is None else f"{1e3 * infer_s:.3f}",
                      _plus_minus(nll, ".3f"), _plus_minus(gap, "+.3f"))  # fmt: skip
    return table


def verdict(report: dict[str, Any]) -> str:
    t = report["targets"]
    gap = report["dt_minus_npe_b"]
    return (
        f"speed: NPE retraining / DT adaptation = {t['speed_ratio']:,.0f}x "
        f"(target >= {SPEED_TARGET:,.0f}x: {'met' if t['speed_met'] else 'NOT met'}); "
        f"NLL: DT - NPE(B) = {_plus_minus(gap, '+.3f')} nats "
        f"(target <= {NLL_MARGIN}: {'met' if t['nll_met'] else 'NOT met'})"
    )
