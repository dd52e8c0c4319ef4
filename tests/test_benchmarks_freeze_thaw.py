"""benchmarks/freeze_thaw.py: the smoke run end to end, and its pieces against loops by hand.

Oracles: the random-search trace and the regret curve recomputed with plain loops over the
lookup table; Hyperband's paid epochs recounted from Optuna's own trial records; the
freeze-thaw run replayed through `FreezeThaw` by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import FLOAT64_ATOL
from tests.helpers import load_script

pytest.importorskip("optuna")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "freeze_thaw.py"
JSON_ROUNDING_ATOL = 1e-6  # the JSON's mean regret curves are rounded to 6 decimals


@pytest.fixture(scope="module")
def bench() -> dict:
    """The benchmark's modules, imported as the script imports them."""
    load_script(SCRIPT, "freeze_thaw_benchmark")
    modules = ("freeze_thaw_methods", "freeze_thaw_report", "lc_data")
    return {name: sys.modules[name] for name in modules}


@pytest.fixture(scope="module")
def table(bench: dict) -> Any:
    return bench["lc_data"].load_learning_curves()["wine-sgd"]


def test_smoke_run_writes_json_markdown_and_plot(tmp_path: Path) -> None:
    out, figure = tmp_path / "ft.json", tmp_path / "ft.png"
    command = [sys.executable, str(SCRIPT), "--smoke", "--markdown", "--json", str(out),
               "--plot", str(figure)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "| mean area |" in done.stdout and "| ms per decision |" in done.stdout
    in_sample = "in-sample hyperparameters (fitted on these tables by benchmarks/lc_fit.py)"
    assert done.stdout.count(in_sample) == 2  # the printed caption and the markdown's
    results = json.loads(out.read_text())
    assert results["hyperparameters"] == in_sample
    for data in results["benchmarks"].values():
        assert set(data["summary"]) == {"freeze-thaw", "hyperband", "random"}
        for method, curve in data["mean_regret_curve"].items():
            assert len(curve) == data["budget_epochs"]
            assert np.all(np.diff(curve) <= FLOAT64_ATOL), method  # the incumbent only improves
        assert data["summary"]["freeze-thaw"]["seconds_per_decision"] > 0
    assert figure.stat().st_size > 0


def test_random_search_and_regret_match_loops(bench: dict, table) -> None:
    methods, report = bench["freeze_thaw_methods"], bench["freeze_thaw_report"]
    budget = 2 * table.max_epoch + 7
    trace = methods.run_random(table, seed=3, budget=budget)
    order = np.random.default_rng(3).permutation(len(table.configs))
    seen, best, expected = 0, np.inf, []
    for i in order:
        for t in range(table.max_epoch):
            if seen == budget:
                break
            best = min(best, table.errors[i, t])
            expected.append(best)
            seen += 1
    assert trace.incumbent == pytest.approx(expected, abs=FLOAT64_ATOL)
    curve = report.regret_curve(trace.incumbent, table, budget + 5)  # pads with the last value
    floor = min(row[-1] for row in table.errors)
    assert curve == pytest.approx([*expected, *[expected[-1]] * 5] - floor, abs=FLOAT64_ATOL)
    summary = report.summarise({"random": [curve, curve + 1]}, {})
    assert summary["random"]["area"] == pytest.approx(curve.mean() + 0.5, abs=FLOAT64_ATOL)


def test_hyperband_pays_for_every_epoch_it_reads(bench: dict, table) -> None:
    """Paid epochs = the epochs each Optuna trial reported; the incumbent is their minimum."""
    import optuna

    methods = bench["freeze_thaw_methods"]
    budget = 3 * table.max_epoch
    studies = []
    original = optuna.create_study

    def recording(*args, **kwargs):
        studies.append(original(*args, **kwargs))
        return studies[-1]

    optuna.create_study = recording
    try:
        trace = methods.run_hyperband(table, seed=1, budget=budget)
    finally:
        optuna.create_study = original
    trials = studies[0].get_trials(deepcopy=False)
    reported = [trial.intermediate_values for trial in trials]
    assert sum(len(values) for values in reported) == budget == len(trace.incumbent)
    assert any(trial.state == optuna.trial.TrialState.PRUNED for trial in trials)
    lowest = min(v for values in reported for v in values.values())
    assert trace.incumbent[-1] == pytest.approx(lowest, abs=FLOAT64_ATOL)
    assert methods.run_hyperband(table, seed=1, budget=budget).incumbent == trace.incumbent


def test_freeze_thaw_run_is_the_optimiser_replayed(bench: dict, table) -> None:
    from pfnkit.bo import FreezeThaw

    budget = 30
    trace = bench["freeze_thaw_methods"].run_freeze_thaw(table, seed=5, budget=budget)
    ft, best = FreezeThaw(table.configs, table.max_epoch, seed=5), []
    while len(best) < budget:
        i, epoch = ft.ask()
        ft.tell(i, epoch, float(table.errors[i, epoch - 1]))
        best.append(ft.best()[1])
    assert trace.incumbent == pytest.approx(best, abs=FLOAT64_ATOL)
    assert len(trace.decision_seconds) == budget


def test_lc_fit_smoke_improves_on_its_start(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """lc_fit.py --smoke runs; leave-one-out refits from START with the full budget, without
    the held-out table; its Nelder-Mead never ends above its start."""
    fit = load_script(ROOT / "benchmarks" / "lc_fit.py", "lc_fit")
    calls, original = [], fit.fit

    def recording(designs: dict, start: list[float], max_evals: int) -> np.ndarray:
        calls.append((sorted(designs), start, max_evals))
        return original(designs, start, max_evals)

    monkeypatch.setattr(fit, "fit", recording)
    out = tmp_path / "lc_fit.json"
    assert fit.main(["--smoke", "--leave-one-out", "--out", str(out)]) == 0
    assert "final-epoch NLL" in capsys.readouterr().out
    both = ["digits-mlp", "wine-sgd"]
    assert calls == [(both, fit.START, 20), (["digits-mlp"], fit.START, 20),
                     (["wine-sgd"], fit.START, 20)]  # fmt: skip
    written = json.loads(out.read_text())
    assert sorted(written["leave_one_out"]) == both and "all_tables" in written
    tables = sys.modules["lc_data"].load_learning_curves()
    designs = {"wine-sgd": [fit.design(tables["wine-sgd"], np.random.default_rng(0))]}
    best = fit.fit(designs, fit.START, 15)
    start_nll = fit.score(fit.unpack(np.array(fit.START)), designs)["wine-sgd"]
    assert fit.score(fit.unpack(best), designs)["wine-sgd"] <= start_nll + FLOAT64_ATOL


def test_held_out_hyperparameters_reach_the_freeze_thaw_surrogate(
    bench: dict, table, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--hyperparameters runs each table on its own entry: the run replayed by hand agrees."""
    from pfnkit.bo.freeze_thaw_surrogate import ExactFreezeThawSurrogate
    from pfnkit.reference.freeze_thaw import FreezeThawHyperparameters

    hyper = FreezeThawHyperparameters(mean=0.3, lengthscale=0.4, outputscale=0.02,
                                      curve_scale=0.05, alpha=1.2, beta=0.2, noise=1e-3,
                                      amplitude_mean=0.2, amplitude_var=0.05)  # fmt: skip
    path, out = tmp_path / "loo.json", tmp_path / "ft.json"
    path.write_text(json.dumps({"leave_one_out": {"wine-sgd": hyper.to_dict()}}))
    script = sys.modules["freeze_thaw_benchmark"]
    argv = ["--smoke", "--benchmarks", "wine-sgd", "--methods", "freeze-thaw",
            "--hyperparameters", str(path), "--json", str(out)]  # fmt: skip
    assert script.main(argv) == 0
    assert "out-of-sample hyperparameters" in capsys.readouterr().out
    results = json.loads(out.read_text())["benchmarks"]["wine-sgd"]
    budget, methods = results["budget_epochs"], bench["freeze_thaw_methods"]
    curves = [bench["freeze_thaw_report"].regret_curve(
                  methods.run_freeze_thaw(table, seed, budget, ExactFreezeThawSurrogate(hyper))
                  .incumbent, table, budget) for seed in range(2)]  # fmt: skip
    got = results["mean_regret_curve"]["freeze-thaw"]
    assert got == pytest.approx(np.mean(curves, axis=0), abs=JSON_ROUNDING_ATOL)
    with pytest.raises(SystemExit, match="no leave-one-out hyperparameters"):
        script.main(["--smoke", "--hyperparameters", str(path)])  # digits-mlp is missing


def test_checkpoint_adds_freeze_thaw_on_the_library_pfn_surrogate(
    bench: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--checkpoint ft-gp runs freeze-thaw-pfn: its curves are FreezeThaw(surrogate="ft-gp")
    replayed by hand; a table of another configuration dimension stops the run first."""
    from pfnkit.bo import FreezeThaw

    script, out = sys.modules["freeze_thaw_benchmark"], tmp_path / "ft.json"
    argv = ["--smoke", "--benchmarks", "digits-mlp", "--checkpoint", "ft-gp", "--methods",
            "freeze-thaw-pfn", "--markdown", "--json", str(out)]  # fmt: skip
    assert script.main(argv) == 0
    assert "freeze-thaw-pfn on checkpoint 'ft-gp'" in capsys.readouterr().out
    results = json.loads(out.read_text())
    data = results["benchmarks"]["digits-mlp"]
    assert results["checkpoint"]["name"] == "ft-gp" and list(data["summary"]) == ["freeze-thaw-pfn"]
    assert data["summary"]["freeze-thaw-pfn"]["seconds_per_decision"] > 0
    table, curves = bench["lc_data"].load_learning_curves()["digits-mlp"], []
    for seed in range(2):
        ft, best = FreezeThaw(table.configs, table.max_epoch, seed=seed, surrogate="ft-gp"), []
        while len(best) < data["budget_epochs"]:
            i, epoch = ft.ask()
            ft.tell(i, epoch, float(table.errors[i, epoch - 1]))
            best.append(ft.best()[1])
        curves.append(np.array(best) - table.errors[:, -1].min())
    got = data["mean_regret_curve"]["freeze-thaw-pfn"]
    assert got == pytest.approx(np.mean(curves, axis=0), abs=JSON_ROUNDING_ATOL)
    with pytest.raises(SystemExit, match=r"\['wine-sgd'\] have another number"):
        script.main(["--smoke", "--checkpoint", "ft-gp"])  # the SGD tables are 3-D, ft-gp 4-D
    with pytest.raises(SystemExit):  # argparse: freeze-thaw-pfn needs --checkpoint
        script.main(["--smoke", "--methods", "freeze-thaw-pfn"])


# ------------------------------------------------------- single-curve extrapolation
LC_SCRIPT = ROOT / "benchmarks" / "lc_extrapolation.py"


@pytest.fixture(scope="module")
def lc_bench() -> Any:
    """benchmarks/lc_extrapolation.py and its methods module, imported as the script does."""
    script = load_script(LC_SCRIPT, "lc_extrapolation_benchmark")
    return script, sys.modules["lc_extrapolation_methods"]


@pytest.fixture(scope="module")
def tiny_lc_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny single-curve PFN on the 50-epoch parametric prior, saved as a checkpoint."""
    import torch

    from pfnkit.checkpoint import save_checkpoint
    from pfnkit.models import PFN, PFNConfig
    from priors.learning_curves_parametric import ParametricCurvePriorConfig

    config = PFNConfig(num_features=1, d_model=16, n_heads=2, n_layers=1, d_ff=32, n_bars=40)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = PFN(config, torch.linspace(-0.2, 1.2, config.n_bars + 1))
    path = tmp_path_factory.mktemp("lc") / "lc-tiny"
    save_checkpoint(path, model, prior_name="lc-parametric",
                    prior_config=ParametricCurvePriorConfig().to_dict(), train_config={},
                    command="test", reference="lc-nuts")  # fmt: skip
    return path


@pytest.mark.parametrize("mcmc", ["smc", "nuts"])
def test_lc_extrapolation_smoke_writes_json_markdown_and_plot(
    lc_bench: Any,
    tiny_lc_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mcmc: str,
) -> None:
    script, _ = lc_bench
    out, figure = tmp_path / "lc.json", tmp_path / "lc.png"
    argv = ["--smoke", "--checkpoint", str(tiny_lc_checkpoint), "--markdown", "--json", str(out),
            "--plot", str(figure), "--mcmc", mcmc]  # fmt: skip
    assert script.main(argv) == 0
    label = script.MCMC_LABELS[mcmc]
    assert f"| k | PFN | power law | PFN ({label}'s curves) | {label} |" in capsys.readouterr().out
    results = json.loads(out.read_text())
    assert results["config"]["n_curves"] == 4 and results["config"]["target_epoch"] == 50
    assert results["config"]["mcmc"] == mcmc and mcmc in results["config"]  # its budget
    for entry in results["ks"].values():
        methods = entry["methods"]
        assert methods["pfn"]["n"] == methods["power-law"]["n"] == 4
        assert methods["mcmc"]["n"] == methods["pfn@mcmc"]["n"] == 2  # one curve per table
        assert methods["pfn@mcmc"]["nll"] == pytest.approx(
            np.mean([c["pfn_nll"] for c in entry["mcmc_curves"]]), abs=FLOAT64_ATOL
        )
        assert all(np.isfinite(c["mcmc_nll"]) for c in entry["mcmc_curves"])
    assert figure.stat().st_size > 0


def test_lc_extrapolation_reuses_reference_runs_only_when_they_answer_the_same_question(
    lc_bench: Any, tiny_lc_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script, _ = lc_bench
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    argv = ["--smoke", "--checkpoint", str(tiny_lc_checkpoint), "--json"]
    assert script.main([*argv, str(first)]) == 0

    def no_new_runs(*args: Any) -> None:
        raise AssertionError("a reference run was repeated")

    monkeypatch.setattr(script, "curve_posterior_smc", no_new_runs)
    assert script.main([*argv, str(second), "--reuse-mcmc", str(first)]) == 0
    for k, entry in json.loads(second.read_text())["ks"].items():
        before = json.loads(first.read_text())["ks"][k]["mcmc_curves"]
        assert entry["mcmc_curves"] == before and len(before) == 2
    with pytest.raises(SystemExit, match="differ"):  # another reference, another question
        script.main([*argv, str(second), "--reuse-mcmc", str(first), "--mcmc", "nuts"])


def test_power_law_on_an_exact_power_law_is_the_floored_gaussian(lc_bench: Any) -> None:
    """y = a + b t^-c exactly: the fit goes through every point, so σ is the floor and the
    target's log density is that of N(y_T, floor²) at its mean, −log(floor √(2π))."""
    _, methods = lc_bench
    t = np.arange(1, 51, dtype=float)
    errors = 0.08 + 0.6 * t**-0.7
    score = methods.power_law_log_prob(errors, 12, 50)
    expected = -np.log(methods.SIGMA_FLOOR * np.sqrt(2 * np.pi))
    assert score.trusted and score.log_prob == pytest.approx(expected, abs=1e-4)
    noisy = errors + np.where(np.arange(50) % 2 == 0, 0.01, -0.01)  # residuals above the floor
    assert methods.power_law_log_prob(noisy, 12, 50).log_prob < expected
    with pytest.raises(ValueError, match="at least 4"):
        methods.power_law_log_prob(errors, 3, 50)


def test_lc_extrapolation_pfn_score_is_the_model_forward(
    lc_bench: Any, tiny_lc_checkpoint: Path
) -> None:
    """The timed cached path equals the model's plain forward on the same task (x = t / T)."""
    import torch

    from pfnkit.checkpoint import load_checkpoint

    _, methods = lc_bench
    model = load_checkpoint(tiny_lc_checkpoint).model.eval()
    errors = np.linspace(0.5, 0.1, 50)
    task = methods.curve_task(errors, 7, 50, 50)
    assert task.x_ctx[0, :, 0].tolist() == pytest.approx([t / 50 for t in range(1, 8)])
    assert float(task.y_qry) == pytest.approx(errors[-1])
    with torch.no_grad():
        expected = float(model(task.x_ctx, task.y_ctx, task.x_qry).log_prob(task.y_qry)[0, 0])
    assert methods.pfn_log_prob(model, task).log_prob == pytest.approx(expected, abs=1e-5)


def test_lc_oracle_gap_smoke_and_its_oracle(tiny_lc_checkpoint: Path, tmp_path: Path) -> None:
    """benchmarks/lc_oracle_gap.py end to end (a checkpoint paired with a copy of itself
    differs by exactly zero; the same one named twice is refused), and
    its oracle NLL against scipy's normal log-density of the families' formulas, task by task."""
    import torch
    from scipy.stats import norm

    gap = load_script(ROOT / "benchmarks" / "lc_oracle_gap.py", "lc_oracle_gap")
    tiny, twin = str(tiny_lc_checkpoint), str(tmp_path / "lc-twin")
    for suffix in (".json", ".safetensors"):
        shutil.copy(tiny + suffix, twin + suffix)
    with pytest.raises(SystemExit, match="twice"):
        gap.main(["--smoke", "--checkpoints", f"{tiny},{tiny}"])
    argv = ["--smoke", "--checkpoints", f"{tiny},{twin}", "--json", str(tmp_path / "g.json")]
    out = gap.main(argv)
    assert json.loads((tmp_path / "g.json").read_text())["tasks"] == gap.SMOKE["tasks"]
    assert [int(k) for k in out["rows"]] == [3, 10]
    for row in out["rows"].values():
        assert np.isfinite(row["gaps"][tiny]["mean"])
        assert row["paired_vs_first"][twin]["mean"] == 0.0
        assert len(row["gaps"][tiny]["by_noise_quarter"]) == gap.N_NOISE_BINS
    prior = gap.curve_prior([{"name": "t", "prior_name": "lc-parametric", "prior_config": {}}])
    batch = prior.sample(5, 7, 6, generator=torch.Generator().manual_seed(1))
    params = batch.meta["params"].double()
    got = gap.oracle_nll(prior, params, batch.x_qry[..., 0], batch.y_qry)
    for b in range(5):
        t = np.rint(batch.x_qry[b, :, 0].double().numpy() * 50).astype(int)
        curve = prior.mean_curve(params[b : b + 1], torch.arange(1.0, 51).double())[0].numpy()
        want = -norm.logpdf(batch.y_qry[b].double().numpy(), curve[t - 1], params[b, -1].item())
        assert got[b] == pytest.approx(want.mean(), abs=FLOAT64_ATOL)
    bins = gap.noise_bins(np.array([0.4, 0.1, 0.3, 0.2, 0.05, 0.5, 0.35, 0.15]))
    assert bins.tolist() == [3, 0, 2, 1, 0, 3, 2, 1]
