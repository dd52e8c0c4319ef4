"""`python cli.py optimize`: naming the function, reading the bounds, the run and its JSON.

Oracles: the objective itself (every value in the JSON is f at its point, recomputed
here), `pfnkit.bo.minimize` called directly (the command adds nothing to the trajectory),
and hand-written bounds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cli
from pfnkit.bo import AcquisitionOptimizerConfig, minimize
from pfnkit.bo.command import load_objective, parse_bounds
from tests.bo.conftest import save_tiny
from tests.conftest import FLOAT64_ATOL

OBJECTIVE = """
import numpy as np

SCALE = 2.0


def bowl(x):
    return float(SCALE * ((np.asarray(x) - np.array([0.25, -0.5])) ** 2).sum())


class Problems:
    @staticmethod
    def shifted(x):
        return bowl(x) + 1.0
"""


def bowl(x: np.ndarray) -> float:  # the same function as OBJECTIVE's, for the oracle
    return float(2.0 * ((np.asarray(x) - np.array([0.25, -0.5])) ** 2).sum())


@pytest.fixture
def objective_dir(tmp_path: Path, monkeypatch) -> Path:
    (tmp_path / "bo_objective_mod.py").write_text(OBJECTIVE)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return str(save_tiny(tmp_path_factory.mktemp("bo-command") / "tiny-bo"))


def test_load_objective_by_module_file_and_dotted_name(objective_dir: Path) -> None:
    x = np.array([1.0, 2.0])
    by_module = load_objective("bo_objective_mod:bowl")
    by_file = load_objective(str(objective_dir / "bo_objective_mod.py") + ":bowl")
    dotted = load_objective("bo_objective_mod:Problems.shifted")
    assert by_module(x) == by_file(x) == bowl(x)
    assert dotted(x) == bowl(x) + 1.0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bo_objective_mod", "must be given as module:function"),
        ("bo_objective_mod:", "must be given as module:function"),
        ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
        ("bo_objective_mod:nope", "has no attribute 'nope'"),
        ("bo_objective_mod:SCALE", "is a float, not a function"),
        ("missing_file.py:f", "no file 'missing_file.py'"),
    ],
)
def test_load_objective_says_what_is_wrong(objective_dir: Path, spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_objective(spec)


def test_load_objective_names_a_missing_dependency_of_the_module(
    tmp_path: Path, monkeypatch
) -> None:
    """A ModuleNotFoundError inside the user's module is about what it imports, not about
    where the module is: the message names the missing one, not the working directory."""
    source = "import no_such_dependency_xyz\n\ndef f(x):\n    return 0.0\n"
    (tmp_path / "bo_needs_a_dep.py").write_text(source)
    package = tmp_path / "bo_pkg_needs_a_dep"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "inner.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    for spec in ("bo_needs_a_dep:f", "bo_needs_a_dep.py:f", "bo_pkg_needs_a_dep.inner:f"):
        with pytest.raises(ValueError, match="No module named 'no_such_dependency_xyz'") as info:
            load_objective(spec)
        assert "run from the folder" not in str(info.value)
        assert "was found, but importing it failed" in str(info.value)
    with pytest.raises(ValueError, match="cannot import 'bo_pkg_needs_a_dep.nothing'.*run from"):
        load_objective("bo_pkg_needs_a_dep.nothing:f")  # the package is there, the module not


def test_parse_bounds() -> None:
    expected = np.array([[-5.0, 10.0], [0.0, 15.0], [1e-3, 2.5]])
    assert np.array_equal(parse_bounds("-5,10;0,15;1e-3,2.5"), expected)
    assert np.array_equal(parse_bounds(" -5 , 10 ; 0,15; 1e-3,2.5; "), expected)
    with pytest.raises(ValueError, match=r"bounds pair 1 is '2'"):
        parse_bounds("0,1;2")
    with pytest.raises(ValueError, match=r"bounds pair 0 is 'a,b'"):
        parse_bounds("a,b")
    with pytest.raises(ValueError, match=r"bounds\[1\] = \(3, 2\) has low >= high"):
        parse_bounds("0,1;3,2")


def test_cli_optimize_writes_the_run_that_minimize_makes(
    objective_dir: Path, tiny: str, capsys
) -> None:
    out = objective_dir / "run.json"
    argv = ["optimize", "bo_objective_mod:bowl", "--bounds=-1,1;-2,2", "--n-evals", "5",
            "--n-init", "3", "--checkpoint", tiny, "--seed", "4", "--json", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    xs, ys = np.array(report["xs"]), np.array(report["ys"])
    assert xs.shape == (5, 2) and report["n_evals"] == 5
    assert np.allclose(ys, [bowl(x) for x in xs], rtol=0, atol=FLOAT64_ATOL)
    assert report["y_best"] == ys.min() and report["x_best"] == xs[ys.argmin()].tolist()
    assert report["bounds"] == [[-1.0, 1.0], [-2.0, 2.0]] and report["seed"] == 4
    direct = minimize(bowl, [(-1, 1), (-2, 2)], 5, n_init=3, checkpoint=tiny, seed=4,
                      config=AcquisitionOptimizerConfig())  # fmt: skip
    assert np.array_equal(direct.xs, xs)
    assert f"minimum {report['y_best']:.6g} after 5 evaluations" in " ".join(printed.split())
    assert f"best {report['y_best']:.6g}" in printed  # the progress bar, on by default
    assert report["trust_region"] is True
    assert cli.main([*argv, "--no-trust-region", "--n-evals", "9"]) == 0
    report = json.loads(out.read_text())
    direct = minimize(bowl, [(-1, 1), (-2, 2)], 9, n_init=3, checkpoint=tiny, seed=4,
                      trust_region=False)  # fmt: skip
    assert report["trust_region"] is False and np.array_equal(direct.xs, report["xs"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--bounds", "1,0"], "optimize: bounds\\[0\\] = \\(1, 0\\) has low >= high"),
        (["--bounds", "0,1;0,1", "--n-evals", "2", "--n-init", "3"], "n_evals=2 is below"),
        (["--bounds", "0,1;0,1", "--acquisition", "ucb"], "unknown acquisition 'ucb'"),
    ],
)
def test_cli_optimize_exits_with_the_reason(
    objective_dir: Path, tiny: str, extra: list[str], message: str
) -> None:
    argv = ["optimize", "bo_objective_mod:bowl", "--checkpoint", tiny, *extra]
    with pytest.raises(SystemExit, match=message):
        cli.main(argv)


def test_cli_optimize_names_the_point_where_f_returned_nan(tmp_path: Path, tiny: str) -> None:
    (tmp_path / "nan_objective.py").write_text("def f(x):\n    return float('nan')\n")
    argv = ["optimize", f"{tmp_path / 'nan_objective.py'}:f", "--bounds", "0,1",
            "--n-evals", "3", "--checkpoint", tiny]  # fmt: skip
    with pytest.raises(SystemExit, match=r"optimize: evaluation 1 of 3: the value at x = \["):
        cli.main(argv)


def test_cli_optimize_help_lists_its_options(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["optimize", "--help"])
    assert info.value.code == 0
    printed = capsys.readouterr().out
    for option in ("--bounds", "--n-evals", "--acquisition", "--checkpoint", "--seed", "--json",
                   "--no-progress"):  # fmt: skip
        assert option in printed


def test_cli_builds_its_parser_without_importing_pfnkit() -> None:
    code = (
        "import sys, cli; cli.build_parser(); "
        "print(sorted(m for m in sys.modules if m.startswith('pfnkit')))"
    )
    root = Path(cli.__file__).resolve().parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert out.stdout.strip() == "[]"
