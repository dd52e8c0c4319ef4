"""examples/bo_quickstart.py runs end to end at smoke size, and its Branin is BoTorch's."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.bo.conftest import save_tiny
from tests.conftest import FLOAT64_ATOL
from tests.helpers import load_script

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def example() -> ModuleType:
    return load_script(ROOT / "examples" / "bo_quickstart.py")


def test_quickstart_smoke_runs(example, tmp_path: Path, capsys) -> None:
    tiny = save_tiny(tmp_path / "tiny-bo")  # random weights: the script's plumbing only
    assert example.main(["--smoke", "--checkpoint", str(tiny)]) == 0
    printed = capsys.readouterr().out
    assert "minimize: best f = " in printed and "after 6 evaluations" in printed
    assert "ask/tell: 2 rounds of 3" in printed


def test_branin_matches_an_independent_implementation(example) -> None:
    synthetic = pytest.importorskip("botorch.test_functions.synthetic")
    import torch

    x = np.random.default_rng(0).uniform([-5, 0], [10, 15], size=(20, 2))
    expected = synthetic.Branin()(torch.as_tensor(x)).numpy()
    assert np.allclose([example.branin(row) for row in x], expected, rtol=0, atol=FLOAT64_ATOL)
    optimum = synthetic.Branin().optimizers[0].double().numpy()
    assert abs(example.branin(optimum) - example.BRANIN_MINIMUM) < 1e-6
