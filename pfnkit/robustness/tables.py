"""Rich tables of robustness reports (returned, never printed: the caller prints them)."""

from __future__ import annotations

from rich.table import Table

from pfnkit.robustness.report import RobustnessReport

__all__ = ["robustness_table"]

_COLUMNS = ("eps", "model mean", "model p90", "exact mean", "exact p90", "ratio",
            "median task ratio")  # fmt: skip


def _show(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def robustness_table(report: RobustnessReport, exact_name: str | None = None) -> Table:
    """Mean and upper-quantile worst-case KL of model and exact, and their ratio, per radius.

    Args:
        report: the attack's report.
        exact_name: the oracle's name in the title; by default "exact GP", or "exact
            posterior" for an attack on a posterior's observations.
    """
    attack = report.attack
    exact, over = ("exact GP", "mean over queries")
    if report.target == "observations":
        exact, over = "exact posterior", "over θ"
    exact = exact if exact_name is None else exact_name
    table = Table(
        title=f"{report.checkpoint} vs {exact}: worst-case KL(q(.|D) || q(.|D+delta)), {over}",
        caption=f"{report.n_tasks} tasks, {report.n_ctx} data points; target "
        f"{report.target}; {attack['norm']} ball of radius eps in units of the data's std; "
        f"{attack['steps']} steps x {attack['restarts']} restart(s). ratio = model mean KL / "
        "exact mean KL (> 1: the model moves more than exact)",
    )
    for name in _COLUMNS:
        table.add_column(name, justify="right")
    for r in report.results:
        table.add_row(
            f"{r.eps:g}",
            *(_show(v) for v in (r.model_mean, r.model_p90, r.exact_mean, r.exact_p90)),
            _show(r.ratio),
            _show(r.median_task_ratio),
        )
    return table
