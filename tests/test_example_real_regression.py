"""examples/real_regression.py runs end to end at smoke size on the tiny 10-feature checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tests.helpers import load_script

ROOT = Path(__file__).resolve().parents[1]


def test_real_regression_smoke(tmp_path: Path, capsys) -> None:
    module = load_script(ROOT / "examples" / "real_regression.py")
    out = tmp_path / "scores.json"
    checkpoint = str(ROOT / "tests" / "data" / "gp10-tiny.json")
    assert module.main(["--smoke", "--checkpoint", checkpoint, "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    methods = ("PFN", "gpytorch ML-II", "sklearn GPR")
    assert sorted(results) == sorted(
        f"{data}|20|{m}" for data in ("diabetes", "friedman1") for m in methods
    )
    for entry in results.values():
        assert len(entry["runs"]) == 2
        summary = entry["summary"]
        assert summary["failed"] == 0
        assert all(
            math.isfinite(summary[k]["mean"]) for k in ("nll", "rmse", "coverage", "seconds")
        )
        assert 0.0 <= entry["summary"]["coverage"]["mean"] <= 1.0
    assert "test NLL" in capsys.readouterr().out


def test_a_failing_split_is_counted_and_left_out_of_the_means() -> None:
    module = load_script(ROOT / "examples" / "real_regression.py", "real_regression_fail")
    x, y = module.datasets(smoke=True)["diabetes"]

    def fails(*_):
        raise RuntimeError("every ML-II restart failed")

    runs = [module.score(module.predict_gpytorch_ml2, x, y, 20, seed) for seed in range(2)]
    runs.append(module.score(fails, x, y, 20, 0))
    assert runs[-1] == {"failed": "every ML-II restart failed"}
    summary = module.summarize(runs)
    assert summary["failed"] == 1
    assert math.isclose(summary["nll"]["mean"], (runs[0]["nll"] + runs[1]["nll"]) / 2)
