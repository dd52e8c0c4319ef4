"""Slow: the shipped checkpoints meet the tolerances their cards declare, on fresh tasks."""

from __future__ import annotations

import pytest

import priors
from pfnkit.checkpoint import load_checkpoint
from pfnkit.metrics import mean_or_none
from pfnkit.validation.gp_exact import validate_against_exact_gp
from tests.conftest import FLOAT64_ATOL, STANDARD_ERRORS

N_TASKS = 64
# 90% intervals, 64 tasks x 100 correlated queries: PFN against exact coverage on the same
# points per size, and the PFN's coverage averaged over sizes against the nominal 0.90
PAIRED_COVERAGE_TOLERANCE = 0.03
MEAN_COVERAGE_TOLERANCE = 0.02
ROBUSTNESS_TASKS = 16
ROBUSTNESS_GAIN = 0.1  # measured 23% lower on 64 tasks; claim at least 10% on 16


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gp-rbf", "gp-rbf-robust"])
def test_gp_checkpoint_meets_its_card_tolerance_against_the_exact_gp(name: str) -> None:
    ckpt = load_checkpoint(name)
    prior = priors.make_prior(ckpt.card["prior_name"], ckpt.card["prior_config"])
    report = validate_against_exact_gp(
        ckpt.model,
        prior,
        checkpoint=ckpt.name,
        n_tasks=N_TASKS,
        seed=2024,
        tolerances=ckpt.card["tolerances"],
    )
    assert report.passed, report.to_dict()
    if name == "gp-rbf-robust":  # the Fisher penalty widens intervals on purpose
        return
    for size in report.sizes:
        assert abs(size.pfn_coverage[0.9] - size.exact_coverage[0.9]) < PAIRED_COVERAGE_TOLERANCE
    mean_coverage = mean_or_none([s.pfn_coverage[0.9] for s in report.sizes])
    assert abs(mean_coverage - 0.9) < MEAN_COVERAGE_TOLERANCE


@pytest.mark.slow
def test_tp_rbf_meets_its_card_against_the_exact_student_t_process() -> None:
    """The card's two bounds (mean NLL gap, worst 90% coverage error) on tasks it never saw."""
    from pfnkit.validation.tp_exact import validate_against_exact_student_t

    ckpt = load_checkpoint("tp-rbf")
    prior = priors.make_prior(ckpt.card["prior_name"], ckpt.card["prior_config"])
    report = validate_against_exact_student_t(
        ckpt.model, prior, checkpoint=ckpt.name, n_tasks=256, seed=2024,
        tolerances=ckpt.card["tolerances"],
    )  # fmt: skip
    assert set(ckpt.card["tolerances"]) == {"nll_gap_mean", "coverage90_error_max"}
    assert report.passed, report.to_dict()


@pytest.mark.slow
def test_the_fisher_regularised_checkpoint_moves_less_under_attack() -> None:
    """Same tasks and attack: gp-rbf-robust's worst-case KL ratio to exact is the lower."""
    import torch

    from pfnkit.reference.exact_gp import GPHyperparameters
    from pfnkit.robustness.attacks import exact_gp_predictor
    from pfnkit.robustness.pgd import AttackConfig
    from pfnkit.robustness.report import robustness_report

    ratios = {}
    for name in ("gp-rbf", "gp-rbf-robust"):
        ckpt = load_checkpoint(name)
        prior = priors.make_prior(ckpt.card["prior_name"], ckpt.card["prior_config"])
        hyper = GPHyperparameters(**prior.fixed_gp_hyperparameters())
        gen = torch.Generator().manual_seed(7)
        batch = prior.sample(ROBUSTNESS_TASKS, 20, 50, generator=gen)
        report = robustness_report(
            ckpt.model,
            batch,
            exact_gp_predictor(hyper),
            eps=[0.05],
            config=AttackConfig(steps=10),
            generator=gen,
        )
        ratios[name] = report.results[0].ratio
    assert ratios["gp-rbf-robust"] < (1 - ROBUSTNESS_GAIN) * ratios["gp-rbf"], ratios


FUSION_REGRESSION_BOUND = 0.2  # nats; the 0.1 target is not met (0.12-0.15 measured)
SBC_KS_MIN_PVALUE = 1e-3  # calibration: every dimension's SBC ranks pass a KS test


@pytest.mark.slow
def test_dt_gauss2d_meets_its_card_against_the_exact_posterior() -> None:
    from pfnkit.validation.dt_exact import validate_dt_conjugate

    ckpt = load_checkpoint("dt-gauss2d")
    prior = priors.make_prior(ckpt.card["prior_name"], ckpt.card["prior_config"])
    tol = ckpt.card["tolerances"]
    report = validate_dt_conjugate(
        ckpt.model, prior, n_tasks=256, n_c2st_tasks=3, n_c2st_samples=500, seed=2024
    )
    assert report.mean_gap <= tol["nll_gap_mean"], report.to_dict()
    assert report.c2st_mean <= tol["c2st_mean"], report.to_dict()
    assert report.fusion.gap <= FUSION_REGRESSION_BOUND, report.to_dict()
    assert min(report.sbc["ks_pvals"]) > SBC_KS_MIN_PVALUE


LOGISTIC_REGRESSION_BOUND = 0.35  # nats; the card's 0.1 is not met (0.196 measured, 256 tasks)


@pytest.mark.slow
def test_dt_logistic2d_nll_gap_stays_within_its_measured_range() -> None:
    from pfnkit.validation.dt_nuts import validate_dt_nuts

    ckpt = load_checkpoint("dt-logistic2d")
    prior = priors.make_prior(ckpt.card["prior_name"], ckpt.card["prior_config"])

    report = validate_dt_nuts(ckpt.model, prior, n_tasks=64, n_nuts_tasks=0, seed=2024)
    assert 0 < report.mean_gap <= LOGISTIC_REGRESSION_BOUND, report.to_dict()


BNN_IS_DRAWS = 100_000  # prior draws of the importance-sampling oracle (weights <= 1 each)
BNN_NUTS_TASKS = 3  # tasks at n_ctx 50 that get a full NUTS reference (about a minute each)
# A mean over 3 tasks of the PFN - NUTS gap; looser than the card's 0.02 (measured on 80).
BNN_NUTS_BOUND = 0.05


@pytest.mark.slow
def test_bnn_clf_meets_its_card_against_importance_sampling_and_nuts() -> None:
    import torch

    from pfnkit.validation.bnn_nuts import validate_classifier_against_nuts
    from pfnkit.validation.bnn_nuts_results import BNNNutsValidationConfig
    from tests.helpers import ImportanceSamplingPredictive

    ckpt = load_checkpoint("bnn-clf")
    prior = priors.make_prior(ckpt.card["prior_name"], ckpt.card["prior_config"])
    oracle = ImportanceSamplingPredictive(prior, BNN_IS_DRAWS)
    generator = torch.Generator().manual_seed(2024)
    gaps = []
    for n_ctx in (1, 5):  # few labels: the prior is an adequate importance proposal
        batch = prior.sample(N_TASKS, n_ctx, 50, generator=generator)
        y = batch.y_qry.long()
        with torch.inference_mode():
            pfn_nll = -ckpt.model(batch.x_ctx, batch.y_ctx, batch.x_qry).log_prob(y).mean()
        exact_nll = -oracle(batch.x_ctx, batch.y_ctx, batch.x_qry).log_prob(y).mean()
        gaps.append(float(pfn_nll) - float(exact_nll))
    assert mean_or_none(gaps) <= ckpt.card["tolerances"]["nll_gap_mean"], gaps
    config = BNNNutsValidationConfig(n_ctx_sizes=(50,), n_tasks=BNN_NUTS_TASKS, curve_tasks=0)
    report = validate_classifier_against_nuts(ckpt.model, prior, config=config)
    assert report.trusted_fraction >= 2 / 3, [t.reason for t in report.tasks]
    assert report.mean_gap <= BNN_NUTS_BOUND, report.to_dict()


# gp: two cheap slices of `validate --checkpoint gp --reference nuts`; the card holds the grid
GP_TASKS = 16  # PFN and ML-II per cell
GP_NUTS_TASKS = 2  # of them with a NUTS reference (about 30 s each at d = 10, n_ctx <= 10)


def _gp_report(ckpt, prior, dims, sizes, nuts_tasks):
    from pfnkit.validation.gp_nuts import GPNutsValidationConfig, validate_gp_against_nuts

    config = GPNutsValidationConfig(n_ctx_sizes=sizes, dims=dims, n_tasks=GP_TASKS,
                                    nuts_tasks=nuts_tasks, seed=2024)  # fmt: skip
    return validate_gp_against_nuts(
        ckpt.model, prior, ckpt.card["prior_config"], config=config, checkpoint=ckpt.name,
        workers=2,
    )  # fmt: skip


@pytest.mark.slow
def test_gp_matches_nuts_on_small_contexts_and_its_card_on_large_ones() -> None:
    ckpt = load_checkpoint("gp")
    prior = priors.make_prior(ckpt.card["prior_name"], ckpt.card["prior_config"])
    # Small contexts in 10-D, where NUTS converged on every task of the card's grid: the PFN
    # is within the card's mean tolerance of NUTS, and far ahead of overconfident ML-II.
    small = _gp_report(ckpt, prior, dims=(10,), sizes=(5, 10), nuts_tasks=GP_NUTS_TASKS)
    assert small.trusted_fraction >= 0.5, [t.reason for t in small.tasks if t.nuts_run]
    assert small.mean_gap <= ckpt.card["tolerances"]["nll_gap_mean"], small.to_dict()["cells"]
    assert small.ml2_gap(10) < 0.0, small.to_dict()["cells"]
    # 100 context points in 3-D, where the card records the PFN behind ML-II: the gap stays
    # where the card measured it (a regression check of a known shortfall, not a target).
    large = _gp_report(ckpt, prior, dims=(3,), sizes=(100,), nuts_tasks=1).cells[0]
    card = next(c for c in ckpt.card["validation"]["cells"] if (c["d"], c["n_ctx"]) == (3, 100))
    spread = (large.ml2_gap_stderr**2 + card["ml2_gap_stderr"] ** 2) ** 0.5
    # a fresh cell's PFN - ML-II gap vs the card's, in combined standard errors
    assert abs(large.ml2_gap - card["ml2_gap"]) <= STANDARD_ERRORS * spread, (large, card)


# scm-clf: a few cells of `benchmarks/tabular.py --write-card` re-measured on the card's
# splits with the card's PFN options. The splits, the seeds and LogReg are deterministic; the
# PFN's sums may round differently on another machine or thread count (more so in float32).
# The cells' tables ship with scikit-learn, so no table package of the `bench` extra is read.
SCM_CELLS = [("sklearn/wine", 50), ("sklearn/breast_cancer", 100), ("sklearn/breast_cancer", 300)]
SCM_PFN_ROC_AUC_TOLERANCE = 2e-3  # per-cell mean over the card's splits
SCM_PFN_LOG_LOSS_TOLERANCE = 1e-2
SCM_LOGREG_TOLERANCE = 1e-4
SCM_METRICS = ("roc_auc", "log_loss")


def _tabular_figures(card: dict) -> dict:
    """The card's figures from the current benchmarks/tabular.py, or a skip if it has none.

    The current benchmark records ``max_test`` in its config and names tables by origin
    ("sklearn/wine"); the old one recorded neither.
    """
    figures = card.get("validation") or {}
    if "max_test" not in figures.get("config", {}):
        pytest.skip(
            "scm-clf's card holds no figures of the current tabular benchmark (it holds "
            f"{figures.get('kind', 'none')!r}); record them with "
            "`python benchmarks/tabular.py --write-card`"
        )
    return figures


@pytest.mark.slow
def test_scm_clf_reproduces_its_card_against_logistic_regression() -> None:
    from pathlib import Path

    from pfnkit import PFNClassifier
    from tests.helpers import load_script

    pytest.importorskip("pandas")  # benchmarks/tabular_data.py reads tables as frames
    bench = load_script(Path(__file__).resolve().parents[1] / "benchmarks" / "tabular.py")
    ckpt = load_checkpoint("scm-clf")
    figures = _tabular_figures(ckpt.card)
    config, max_classes = figures["config"], ckpt.model.config.n_classes
    recorded = {(r["dataset"], r["n_train"], r["method"]): r for r in figures["per_dataset"]}
    missing = [c for c in SCM_CELLS if (*c, "PFN") not in recorded]
    assert not missing, f"the card records no {missing}; re-measure cells it records"
    options = {k: v for k, v in config.items() if k in PFNClassifier().get_params()}
    pfn = PFNClassifier(**{**options, "checkpoint": "scm-clf"})
    for dataset, n_train in SCM_CELLS:
        [cell] = bench.build_cells(
            [dataset], [n_train], config["splits"], max_classes, [], config["max_test"]
        )
        records = []
        for split in range(config["splits"]):  # as benchmarks/tabular.py's run_classification
            pfn.set_params(random_state=split, categorical_features=cell.categorical)
            logreg = bench.baselines(split, cell.categorical)["LogReg"]
            for method, estimator in (("PFN", pfn), ("LogReg", logreg)):
                result, _ = bench.fit_predict(estimator, cell, split)
                records.append({"dataset": dataset, "n_train": n_train, "method": method,
                                **result})  # fmt: skip
        fresh = bench.cell_means(records, SCM_METRICS)
        for (_, _, method), figure in fresh.items():
            old = recorded[(dataset, n_train, method)]
            auc_tol, nll_tol = (
                (SCM_PFN_ROC_AUC_TOLERANCE, SCM_PFN_LOG_LOSS_TOLERANCE) if method == "PFN"
                else (SCM_LOGREG_TOLERANCE, SCM_LOGREG_TOLERANCE)
            )  # fmt: skip
            assert abs(figure["roc_auc"] - old["roc_auc"]) <= auc_tol, (dataset, method, figure)
            assert abs(figure["log_loss"] - old["log_loss"]) <= nll_tol, (dataset, method, figure)
    # the recorded verdicts follow from the recorded means
    assert figures["targets"] == bench.classification_targets(figures["summary"])
    assert figures["passed"] == all(t["met"] for t in figures["targets"].values())


@pytest.mark.slow
def test_scm_clf_ignores_the_order_of_context_rows_on_a_real_table() -> None:
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    from pfnkit import PFNClassifier

    x, y = load_breast_cancer(return_X_y=True)
    rows = np.random.default_rng(0).permutation(len(y))
    train, test = rows[:300], rows[300:]
    options = dict(checkpoint="scm-clf", n_estimators=4, dtype="float64", random_state=0)
    proba = PFNClassifier(**options).fit(x[train], y[train]).predict_proba(x[test])
    shuffled = train[np.random.default_rng(1).permutation(len(train))]
    again = PFNClassifier(**options).fit(x[shuffled], y[shuffled]).predict_proba(x[test])
    np.testing.assert_allclose(proba, again, atol=FLOAT64_ATOL, rtol=0)  # float64 summation order


@pytest.mark.slow
def test_lc_curve_meets_its_card_against_tempered_smc() -> None:
    """The card's protocol (8 prior curves per number of observed epochs, tempered SMC, the
    card's tolerances) on curves it never saw (seed 2024, the card used 12345): the mean NLL
    gap and the share of trusted SMC runs. The speed-up is the card's figure, not asserted
    here (timed assertions flake). About 10 minutes on 2 cores."""
    from pfnkit.validation import ValidationOptions, validate

    ckpt = load_checkpoint("lc-curve")
    prior = priors.make_prior(ckpt.card["prior_name"], ckpt.card["prior_config"])
    report = validate(ckpt, prior, options=ValidationOptions(tasks=8, seed=2024, workers=2))
    tol = ckpt.card["tolerances"]
    assert report.trusted_fraction >= tol["trusted_fraction_min"], report.to_dict()
    assert report.mean_gap <= tol["nll_gap_mean"], report.to_dict()
