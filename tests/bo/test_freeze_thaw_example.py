"""examples/freeze_thaw_quickstart.py runs at smoke size; its table is the shipped one."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from pfnkit.checkpoint import save_checkpoint
from pfnkit.models import PFN, PFNConfig
from priors.learning_curves_parametric import ParametricCurvePriorConfig
from tests.conftest import FLOAT64_ATOL
from tests.helpers import load_script

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def example() -> ModuleType:
    return load_script(ROOT / "examples" / "freeze_thaw_quickstart.py")


def _tiny_curve_pfn(path: Path) -> Path:
    """Random weights on the 50-epoch parametric prior: the script's plumbing only."""
    config = PFNConfig(num_features=1, d_model=16, n_heads=2, n_layers=1, d_ff=32, n_bars=40)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = PFN(config, torch.linspace(-0.2, 1.2, config.n_bars + 1))
    save_checkpoint(path, model, prior_name="lc-parametric",
                    prior_config=ParametricCurvePriorConfig().to_dict(), train_config={},
                    command="test")  # fmt: skip
    return path


def test_quickstart_smoke_runs(example: ModuleType, tmp_path: Path, capsys) -> None:
    tiny = _tiny_curve_pfn(tmp_path / "lc-tiny")
    assert example.main(["--smoke", "--checkpoint", str(tiny)]) == 0
    printed = capsys.readouterr().out
    assert "freeze-thaw (exact): 2" in printed and "of 54 configurations" in printed
    assert "extrapolation after 5 epochs: final error" in printed


def test_quickstart_smoke_runs_on_the_pfn_surrogate(
    example: ModuleType, tmp_path: Path, capsys
) -> None:
    tiny = _tiny_curve_pfn(tmp_path / "lc-tiny")
    argv = ["--smoke", "--checkpoint", str(tiny), "--table", "wine-mlp", "--surrogate", "ft-gp"]
    assert example.main(argv) == 0
    printed = capsys.readouterr().out
    assert "freeze-thaw (ft-gp): 2" in printed and "of 162 configurations" in printed


@pytest.mark.parametrize("name", ["wine-sgd", "wine-mlp"])
def test_the_example_reads_the_benchmarks_table(example: ModuleType, name: str) -> None:
    """The same curves as benchmarks/lc_data.py's loader (an independent reader)."""
    configs, errors = example.load_table(name)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import lc_data
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    table = lc_data.load_learning_curves()[name]
    np.testing.assert_allclose(errors, table.errors, atol=FLOAT64_ATOL)
    np.testing.assert_allclose(configs, table.configs, atol=FLOAT64_ATOL)
