"""Rich tables of validation reports; built and returned, never printed (cli.py prints them).

Every builder takes a report's plain data, ``report.to_dict()``, so a report read back from
JSON renders the same, and this module imports no validator module (the validators import
it; a static test forbids import cycles). What used to be printed below a table is its
caption; `checks_table` renders the gated checks and the verdict of any report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table

__all__ = [
    "bnn_nuts_tables",
    "checks_table",
    "dt_exact_tables",
    "dt_nuts_tables",
    "gp_exact_tables",
    "gp_nuts_tables",
    "tp_exact_tables",
]


def _show(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _plus_minus(value: float | None, stderr: float | None) -> str:
    return "-" if value is None else f"{value:+.3f} ± {stderr or 0:.3f}"


def _table(title: str, columns: tuple[str, ...], caption: str | None = None) -> Table:
    table = Table(title=title, caption=caption, caption_justify="left")
    for name in columns:
        table.add_column(name, justify="right")
    return table


def checks_table(report: Mapping[str, Any]) -> Table:
    """One row per check (figure, tolerance, bound, verdict), titled with the report's verdict."""
    verdict = "PASS" if report["passed"] else "FAIL"
    table = _table(f"checks: {verdict}", ("check", "value", "tolerance", "passes if", "verdict"))
    for check in report["checks"]:
        gated = check["tolerance"] is not None
        table.add_row(
            check["name"],
            _show(check["value"], "+.4f"),
            _show(check["tolerance"], "g"),
            ("<=" if check["bound"] == "upper" else ">=") if gated else "not gated",
            ("pass" if check["passed"] else "FAIL") if gated else "-",
        )
    return table


def _percentages(coverage: Mapping[Any, float]) -> str:
    """50/90/95-style coverage, levels in increasing order (float or JSON string keys)."""
    levels = sorted(coverage, key=float)
    return "/".join(f"{100 * coverage[level]:.1f}" for level in levels)


def _exact_sizes_table(report: Mapping[str, Any], oracle: str) -> Table:
    """Per context size: PFN and `oracle` NLL, their gap, coverage and time."""
    sizes = report["sizes"]
    table = _table(
        f"{report['checkpoint']} vs {oracle} ({sizes[0]['n_tasks']} tasks per size; "
        "NLL in nats per query point)",
        ("n_ctx", "PFN NLL", "exact NLL", "gap", "PFN cov 50/90/95", "exact cov 50/90/95",
         "PFN ms/task", "exact ms/task"),
    )  # fmt: skip
    for s in sizes:
        table.add_row(
            str(s["n_ctx"]), f"{s['pfn_nll']:.4f}", f"{s['exact_nll']:.4f}", f"{s['gap']:+.4f}",
            _percentages(s["pfn_coverage"]), _percentages(s["exact_coverage"]),
            f"{1e3 * s['pfn_seconds_per_task']:.2f}", f"{1e3 * s['exact_seconds_per_task']:.2f}",
        )  # fmt: skip
    return table


def gp_exact_tables(report: Mapping[str, Any]) -> list[Table]:
    """Per context size: PFN and exact-GP NLL, their gap, coverage and time; then the checks."""
    return [_exact_sizes_table(report, "exact GP"), checks_table(report)]


def tp_exact_tables(report: Mapping[str, Any]) -> list[Table]:
    """As `gp_exact_tables`, against the exact Student-t predictive; then the checks."""
    return [_exact_sizes_table(report, "exact Student-t"), checks_table(report)]


def _gp_nuts_caption(report: Mapping[str, Any]) -> str:
    lines = [f"NUTS budget: {report['config']['nuts']}"]
    failures = sum(c["ml2_failures"] for c in report["cells"])
    if failures:
        lines.append(f"ML-II failed on {failures} task(s); their ML-II scores are left out")
    lines.append(
        f"trusted NUTS runs {100 * report['trusted_fraction']:.0f}%; mean gap "
        f"{_show(report['mean_gap'], '+.4f')}, max gap {_show(report['max_gap'], '+.4f')} "
        "(over the cells with a trusted run)"
    )
    lines.append(
        "PFN - ML-II NLL averaged over the cells with n_ctx <= 20: "
        f"{_show(report['ml2_gap_n_ctx_le_20'], '+.4f')} (negative: the PFN is better)"
    )
    return "\n".join(lines)


def gp_nuts_tables(report: Mapping[str, Any]) -> list[Table]:
    """One row per (d, n_ctx) cell: PFN, NUTS and ML-II scores and times; then the checks."""
    config = report["config"]
    table = _table(
        f"{report['checkpoint']} vs NUTS-marginalised GP and ML-II ({config['n_tasks']} "
        f"tasks per cell, NUTS on the first {config['nuts_tasks']}; NLL in nats per query "
        f"point; {round(100 * config['level'])}% interval coverage)",
        ("d", "n_ctx", "NUTS trusted", "PFN NLL", "NUTS NLL", "ML-II NLL", "PFN - NUTS",
         "PFN - ML-II", "cov PFN/NUTS/ML-II", "PFN ms", "NUTS s", "ML-II s", "speed-up"),
        caption=_gp_nuts_caption(report),
    )  # fmt: skip
    for c in report["cells"]:
        coverages = (c["pfn_coverage"], c["nuts_coverage"], c["ml2_coverage"])
        cov = "/".join(_show(v and 100 * v, ".0f") for v in coverages)
        table.add_row(
            str(c["d"]), str(c["n_ctx"]),
            f"{round(c['trusted_fraction'] * c['nuts_tasks'])}/{c['nuts_tasks']}",
            f"{c['pfn_nll']:.3f}", f"{c['nuts_nll']:.3f}", _show(c["ml2_nll"], ".3f"),
            _plus_minus(c["gap"], c["gap_stderr"]), _plus_minus(c["ml2_gap"], c["ml2_gap_stderr"]),
            cov,
            f"{1e3 * c['pfn_seconds']:.1f}", f"{c['nuts_seconds']:.1f}",
            f"{c['ml2_seconds']:.2f}", f"{c['speed_ratio']:.0f}x",
        )  # fmt: skip
    return [table, checks_table(report)]


def _bnn_nuts_caption(report: Mapping[str, Any]) -> str:
    from pfnkit.reference.nuts_classifier import GATED_ON

    config = report["config"]
    lines = [
        f"NUTS budget: {config['nuts']}; R-hat and ESS gated on {GATED_ON}, and every query "
        f"point's R-hat below {config['point_r_hat_max']}. 'chain spread': mean over tasks of "
        "max - min of the NLL from each chain alone (the reference's Monte Carlo error)"
    ]
    if report["curve"]:
        points = ", ".join(f"{p['budget']}: {p['nuts_nll']:.4f} in {p['nuts_seconds']:.2f} s"
                           for p in report["curve"])  # fmt: skip
        lines.append(
            f"NLL vs time, {config['curve_tasks']} tasks at n_ctx {config['curve_n_ctx']}, one "
            f"chain (warmup = draws): {points}; PFN {report['curve_pfn_nll']:.4f} in "
            f"{1e3 * report['curve_pfn_seconds']:.1f} ms"
        )
    lines.append(
        f"trusted NUTS runs {100 * report['trusted_fraction']:.0f}%; mean gap "
        f"{_show(report['mean_gap'], '+.4f')}; PFN {_show(report['speed_ratio'], '.0f')}x faster "
        "per task"
    )
    return "\n".join(lines)


def bnn_nuts_tables(report: Mapping[str, Any]) -> list[Table]:
    """One row per context size: PFN and NUTS NLL, trust, accuracy and time; then the checks."""
    table = _table(
        f"{report['checkpoint']} vs NUTS on the weight posterior ({report['config']['n_tasks']} "
        "tasks per size; NLL in nats per query point)",
        ("n_ctx", "trusted", "PFN NLL", "NUTS NLL", "chain spread", "gap (trusted)",
         "acc PFN/NUTS", "PFN ms", "NUTS s", "speed-up"),
        caption=_bnn_nuts_caption(report),
    )  # fmt: skip
    for c in report["cells"]:
        gap = _show(c["gap"], "+.4f")
        gap += "" if c["gap_stderr"] is None else f" ± {c['gap_stderr']:.4f}"
        table.add_row(
            str(c["n_ctx"]), f"{100 * c['trusted_fraction']:.0f}%", f"{c['pfn_nll']:.4f}",
            f"{c['nuts_nll']:.4f}", f"{c['chain_nll_spread']:.4f}", gap,
            f"{100 * c['pfn_accuracy']:.1f}/{100 * c['nuts_accuracy']:.1f}",
            f"{1e3 * c['pfn_seconds']:.1f}", f"{c['nuts_seconds']:.1f}",
            f"{c['speed_ratio']:.0f}x",
        )  # fmt: skip
    return [table, checks_table(report)]


def dt_exact_tables(report: Mapping[str, Any]) -> list[Table]:
    """Per number of observations: DT and exact NLL of θ, gap, C2ST, time; then the checks.

    The caption holds the SBC figures and the sequential-fusion line.
    """
    sbc, f = report["sbc"], report["fusion"]
    ks, dap, ranks = (", ".join(f"{v:.3f}" for v in sbc.get(key, []))
                      for key in ("ks_pvals", "c2st_dap", "c2st_ranks"))  # fmt: skip
    caption = (
        f"SBC ({report['sbc_samples']} draws per task): KS p-values per dim {ks}; C2ST of "
        f"ranks vs uniform {ranks}; of data-averaged posterior vs prior {dap}\n"
        f"fusion ({f['n_batches']} x {f['batch_size']} obs, each posterior fed back): DT "
        f"{f['dt_sequential_nll']:.4f}, DT all at once {f['dt_joint_nll']:.4f}, exact "
        f"{f['exact_nll']:.4f}, gap {f['gap']:+.4f}"
    )
    table = _table(
        f"{report['checkpoint']} vs exact posterior ({report['n_tasks']} tasks per size; "
        "NLL of the true θ in nats)",
        ("n_obs", "DT NLL", "exact NLL", "gap", "C2ST", "DT ms/task", "exact ms/task"),
        caption=caption,
    )
    for s in report["sizes"]:
        table.add_row(
            str(s["n_obs"]), f"{s['dt_nll']:.4f}", f"{s['exact_nll']:.4f}", f"{s['gap']:+.4f}",
            _show(s["c2st"], ".3f"), f"{1e3 * s['dt_seconds_per_task']:.3f}",
            f"{1e3 * s['exact_seconds_per_task']:.3f}",
        )  # fmt: skip
    return [table, checks_table(report)]


def dt_nuts_tables(report: Mapping[str, Any]) -> list[Table]:
    """Per number of observations: DT vs NUTS-trusted NLL, C2ST, mean error, time; checks."""
    table = _table(
        f"{report['checkpoint']} vs NUTS (NLL of the true θ in nats)",
        ("n_obs", "tasks", "NUTS trusted", "DT NLL", "exact NLL", "gap", "C2ST",
         "|mean err|/sd", "DT ms/task", "NUTS s/task"),
        caption=f"NUTS budget: {report['nuts']}\nmean gap "
        f"{_show(report['mean_gap'], '+.4f')}, mean C2ST {_show(report['c2st_mean'], '.3f')}",
    )  # fmt: skip
    for s in report["sizes"]:
        table.add_row(
            str(s["n_obs"]), str(s["n_tasks"]), f"{s['n_trusted']}/{s['n_nuts']}",
            f"{s['dt_nll']:.4f}", f"{s['exact_nll']:.4f}", f"{s['gap']:+.4f}",
            _show(s["c2st"], ".3f"), _show(s["mean_error_sd"], ".3f"),
            f"{1e3 * s['dt_seconds_per_task']:.3f}", _show(s["nuts_seconds_per_task"], ".2f"),
        )  # fmt: skip
    return [table, checks_table(report)]
