"""benchmarks/bo.py and its modules: the smoke run end to end, and the summaries by hand.

Oracles: ranks, budget fractions and regret curves computed by hand on small arrays; the
listed minima of the test functions (a polished minimum is never far below them, and no
point of the box goes below it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.bo.conftest import save_tiny
from tests.conftest import FLOAT64_ATOL
from tests.helpers import load_script

pytest.importorskip("botorch")  # the `bench` extra
pytest.importorskip("optuna")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bo.py"
SOLVE_ROUTE_ATOL = 1e-8  # float64 GP predictive by two linear-algebra routes (condition ~1e2)


@pytest.fixture(scope="module")
def bench() -> dict:
    """The benchmark's modules, imported as the script imports them."""
    load_script(SCRIPT, "bo_benchmark")  # puts bo_problems, bo_report, ... in sys.modules
    return {name: sys.modules[name] for name in ("bo_problems", "bo_report", "bo_methods")}


def test_smoke_run_prints_the_tables_and_targets(tmp_path: Path) -> None:
    tiny = save_tiny(tmp_path / "tiny-bo")  # random weights: a contract check, not quality
    out, figure = tmp_path / "bo.json", tmp_path / "bo.png"
    command = [sys.executable, str(SCRIPT), "--smoke", "--markdown", "--no-progress",
               "--checkpoint", str(tiny), "--json", str(out), "--plot", str(figure)]  # fmt: skip
    done = subprocess.run(command, check=True, timeout=300, capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    report = json.loads(out.read_text())
    assert figure.stat().st_size > 0
    assert set(report["summary"]["functions"]) == {"branin", "hartmann3"}
    assert set(report["summary"]["mean_rank"]) == {"pfnkit", "botorch", "optuna", "random"}
    assert sum(report["summary"]["mean_rank"].values()) == pytest.approx(1 + 2 + 3 + 4)
    for curve in report["regret_curves"].values():
        regret = np.array(curve)
        assert regret.shape == (2, 6) and (regret >= 0).all()
        assert (np.diff(regret, axis=1) <= 0).all()  # best so far never gets worse
    assert report["timing"]["ratio"] > 0 and report["timing"]["n_observations"] == 8
    assert "| branin | pfnkit |" in done.stdout and "target mean rank" in done.stdout
    assert "target step time" in done.stdout


def test_mean_ranks_by_hand(bench) -> None:
    report = bench["bo_report"]
    results = report.Results(budget=2, n_init={"f": 1, "g": 1})
    # final regrets: f seed 0: a 1, b 2, c 3; f seed 1: a 3, b 1, c 1 (tie: 1.5 each)
    results.regret = {
        ("f", "a"): np.array([[5, 1], [5, 3]]),
        ("f", "b"): np.array([[5, 2], [5, 1]]),
        ("f", "c"): np.array([[5, 3], [5, 1]]),
        ("g", "a"): np.array([[1, 0], [1, 0]]),
        ("g", "b"): np.array([[1, 1], [1, 1]]),
        ("g", "c"): np.array([[1, 1], [1, 1]]),
    }
    ranks = report.mean_ranks(results)
    # g: a 1, b 2.5, c 2.5 for both seeds
    expected = {"a": (1 + 3 + 1 + 1) / 4, "b": (2 + 1.5 + 2.5 + 2.5) / 4,
                "c": (3 + 1.5 + 2.5 + 2.5) / 4}  # fmt: skip
    assert ranks == pytest.approx(expected, abs=FLOAT64_ATOL)


def test_budget_fractions_and_step_times_by_hand(bench) -> None:
    report = bench["bo_report"]
    assert [report.fraction_index(50, f) for f in report.FRACTIONS] == [12, 24, 49]
    assert [report.fraction_index(8, f) for f in report.FRACTIONS] == [1, 3, 7]
    results = report.Results(budget=4, n_init={"f": 2})
    results.regret = {("f", "a"): np.zeros((2, 4))}
    results.step_seconds = {("f", "a"): np.array([[0, 0, 1.0, 2.0], [0, 0, 3.0, 6.0]])}
    assert report.mean_step_seconds(results, "f", "a") == pytest.approx(3.0)


def test_problems_know_their_minima(bench) -> None:
    problems = bench["bo_problems"]
    assert len(problems.PROBLEMS) >= 8
    assert all(2 <= problem.dim <= 6 for problem in problems.PROBLEMS)
    rng = np.random.default_rng(0)
    for problem in problems.PROBLEMS:
        listed = float(problem.function.optimal_value)
        assert listed - 1e-3 * (1 + abs(listed)) <= problem.minimum <= listed
        u = rng.random((256, problem.dim))
        assert (problem.evaluate_unit(u) >= problem.minimum).all()
        x = problem.bounds[:, 0] + u[0] * (problem.bounds[:, 1] - problem.bounds[:, 0])
        assert problem(x) == pytest.approx(problem.evaluate_unit(u[:1])[0], abs=FLOAT64_ATOL)
    branin = problems.problems_by_name("branin")[0]
    ys = np.array([3.0, 1.0, 2.0, 0.5])
    expected = np.maximum(np.array([3.0, 1.0, 1.0, 0.5]) - branin.minimum, 0)
    assert np.allclose(branin.regret(ys), expected, rtol=0, atol=FLOAT64_ATOL)


def test_bo_designs_smoke_and_its_oracle(tmp_path: Path) -> None:
    """benchmarks/bo_designs.py end to end, and its oracle against scikit-learn's fixed GP."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process import kernels as sk

    designs = load_script(ROOT / "benchmarks" / "bo_designs.py", "bo_designs")
    tiny = save_tiny(tmp_path / "tiny-bo")
    out = designs.main(["--smoke", "--checkpoints", str(tiny), "--json", str(tmp_path / "d.json")])
    assert set(out["summary"]) == set(designs.DESIGNS)
    for row in out["summary"].values():
        assert set(row) == {str(tiny), "ML-II GP"}
        assert all(np.isfinite(v["mean"]) for v in row.values())
    rng = np.random.default_rng(0)
    u = designs.draw_design("corner", 20, 3, rng)
    assert u.shape == (20 + designs.N_QUERY, 3) and u.min() >= 0 and u.max() <= 1
    x, ls, scale, noise = (u - 0.5) * 12**0.5, np.array([0.7, 1.5, 3.0]), 1.3, 0.01
    cov = designs.matern52(x, x, ls, scale) + noise * np.eye(len(x))
    y = rng.standard_normal(len(x))
    mean, var = designs.oracle_predictive(cov, 20, scale + noise, y[:20])
    kernel = sk.ConstantKernel(scale, "fixed") * sk.Matern(ls, "fixed", nu=2.5) + sk.WhiteKernel(
        noise, "fixed"
    )
    gpr = GaussianProcessRegressor(kernel, optimizer=None, alpha=0.0).fit(x[:20], y[:20])
    m_sk, s_sk = gpr.predict(x[20:], return_std=True)
    # two Cholesky-free solves of a jittered 20 x 20 system against sklearn's Cholesky route
    np.testing.assert_allclose(mean, m_sk, atol=SOLVE_ROUTE_ATOL)
    np.testing.assert_allclose(var, s_sk**2, atol=SOLVE_ROUTE_ATOL)
