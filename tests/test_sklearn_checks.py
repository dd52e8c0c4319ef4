"""scikit-learn's estimator checks on PFNRegressor.

They need a checkpoint that takes up to 10 standardized features (the checks' datasets
have up to 10), so they run on the tiny `tests/data/gp10-tiny` checkpoint, made with
`python cli.py pretrain --prior gp --config examples/configs/gp10_tiny.toml \
--out tests/data/gp10-tiny`.
"""

from __future__ import annotations

from pathlib import Path

from sklearn.utils.estimator_checks import parametrize_with_checks

from pfnkit.estimators import PFNRegressor

GP10_TINY = Path(__file__).parent / "data" / "gp10-tiny.safetensors"


@parametrize_with_checks([PFNRegressor(checkpoint=str(GP10_TINY))])
def test_sklearn_estimator_checks(estimator, check) -> None:
    check(estimator)
