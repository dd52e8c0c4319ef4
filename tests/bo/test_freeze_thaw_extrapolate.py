"""`pfnkit.bo.freeze_thaw_extrapolate` and `python cli.py extrapolate` on a tiny random checkpoint.

Oracle: the model's plain forward pass on the same inputs (t / T from the card's prior), read
off with the bar distribution's own icdf and cdf; the CLI's table and JSON against it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cli import main as cli_main
from pfnkit.bo.freeze_thaw_extrapolate import extrapolate_command, extrapolate_curve
from pfnkit.checkpoint import load_checkpoint, save_checkpoint
from pfnkit.models import PFN, PFNConfig
from priors.learning_curves_parametric import ParametricCurvePriorConfig

FLOAT32_ATOL = 1e-5  # float32 identity: the cached path against the plain forward
T = 20  # epochs of the tiny checkpoint's prior
VALUES = [0.7, 0.55, 0.5, 0.46]


@pytest.fixture(scope="module")
def tiny_curve_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = PFNConfig(num_features=1, d_model=16, n_heads=2, n_layers=1, d_ff=32, n_bars=40)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = PFN(config, torch.linspace(-0.2, 1.2, config.n_bars + 1))
    path = tmp_path_factory.mktemp("lc") / "lc-tiny"
    save_checkpoint(path, model, prior_name="lc-parametric",
                    prior_config=ParametricCurvePriorConfig(max_epoch=T).to_dict(),
                    train_config={}, command="test")  # fmt: skip
    return path


def test_forecast_is_the_models_predictive_at_the_later_epochs(tiny_curve_checkpoint: Path) -> None:
    checkpoint = load_checkpoint(tiny_curve_checkpoint)
    forecast = extrapolate_curve(checkpoint, VALUES, threshold=0.4)
    k = len(VALUES)
    assert forecast.epochs == list(range(k + 1, T + 1))
    x_ctx = torch.tensor([[[t / T] for t in range(1, k + 1)]])
    x_qry = torch.tensor([[[t / T] for t in range(k + 1, T + 1)]])
    with torch.no_grad():
        dist = checkpoint.model.eval()(x_ctx, torch.tensor([VALUES]), x_qry)
        for j, level in enumerate(forecast.levels):
            expected = dist.icdf(torch.full_like(dist.mean, level))[0]
            got = torch.tensor([row[j] for row in forecast.quantiles])
            torch.testing.assert_close(got, expected, atol=FLOAT32_ATOL, rtol=0)
        torch.testing.assert_close(torch.tensor(forecast.mean), dist.mean[0], atol=FLOAT32_ATOL,
                                   rtol=0)  # fmt: skip
        below = float(dist.cdf(torch.full_like(dist.mean, 0.4))[0, -1])
    assert forecast.prob_below_threshold == pytest.approx(below, abs=FLOAT32_ATOL)


def test_mistakes_are_value_errors(tiny_curve_checkpoint: Path) -> None:
    checkpoint = load_checkpoint(tiny_curve_checkpoint)
    with pytest.raises(ValueError, match="1 to 19 observed epochs"):
        extrapolate_curve(checkpoint, [0.5] * T)
    with pytest.raises(ValueError, match="finite"):
        extrapolate_curve(checkpoint, [0.5, float("nan")])
    with pytest.raises(ValueError, match="comma-separated numbers"):
        extrapolate_command(str(tiny_curve_checkpoint), "0.5,zero")


def test_cli_prints_the_forecast_and_writes_json(
    tiny_curve_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = ",".join(str(v) for v in VALUES)
    argv = ["extrapolate", "--checkpoint", str(tiny_curve_checkpoint), "--values", values,
            "--threshold", "0.4"]  # fmt: skip
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "forecast after 4 observed epochs" in out and f"P(epoch {T} < 0.4)" in out
    path = tmp_path / "forecast.json"
    extrapolate_command(str(tiny_curve_checkpoint), values, json_path=str(path))
    data = json.loads(path.read_text())
    direct = extrapolate_curve(load_checkpoint(tiny_curve_checkpoint), VALUES)
    assert data["epochs"] == direct.epochs and data["mean"] == pytest.approx(direct.mean)
    with pytest.raises(SystemExit, match="extrapolate: give 1 to"):
        cli_main(["extrapolate", "--checkpoint", str(tiny_curve_checkpoint), "--values",
                  ",".join(["0.5"] * T)])  # fmt: skip
