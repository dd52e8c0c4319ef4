"""scikit-learn's estimator checks on PFNRegressor and PFNClassifier.

First the defaults, `PFNRegressor()` and `PFNClassifier()`, on the shipped general-purpose
checkpoints ("gp", "scm-clf"; about 10 s on one core, all checks together). Then tiny
checkpoints that exercise other cards and options; they take up to 10 standardized
features (the checks' datasets have up to 10): `tests/data/gp10-tiny`, made with
`python cli.py pretrain --prior gp --config examples/configs/gp10_tiny.toml \
--out tests/data/gp10-tiny`, and `tests/data/clf-tiny` (up to 4 classes), made with
`python -m tests.make_clf_tiny`.
"""

from __future__ import annotations

from pathlib import Path

from sklearn.utils.estimator_checks import parametrize_with_checks

from pfnkit.estimators import PFNRegressor
from pfnkit.estimators.classifier import PFNClassifier

DATA = Path(__file__).parents[1] / "data"
GP10_TINY = DATA / "gp10-tiny.safetensors"
CLF_TINY = DATA / "clf-tiny.safetensors"


@parametrize_with_checks(
    [
        PFNRegressor(),
        PFNClassifier(),
        PFNRegressor(checkpoint=str(GP10_TINY)),
        PFNClassifier(checkpoint=str(CLF_TINY)),
        # one member reading the table as given; and one preprocessing for every view
        PFNClassifier(checkpoint=str(CLF_TINY), n_estimators=1, preprocessing="none"),
        PFNRegressor(checkpoint=str(GP10_TINY), n_estimators=3, preprocessing="quantile"),
    ]
)
def test_sklearn_estimator_checks(estimator, check) -> None:
    check(estimator)
