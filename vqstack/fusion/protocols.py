"""Train/test split protocols for fusion experiments.

Why explicit generators: published VQA numbers depend on the protocol (the small-set convention is the
median over 10 random 80/20 splits; KVQ-style sets need splits that keep every version of a source
video on one side, or a model is tested on near-copies of its training videos). Every generator here
is deterministic given its seeds, yields :class:`Split` tuples ``(name, train_idx, test_idx)`` of row
positions, and refuses data too small for the protocol with a :class:`~vqstack.errors.ConfigError`
that gives the numbers.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from vqstack.errors import ConfigError

__all__ = [
    "MIN_PER_SIDE",
    "PROTOCOLS",
    "Split",
    "cross_dataset_split",
    "grouped_kfold_splits",
    "grouped_repeated_splits",
    "holdout_splits",
    "kfold_splits",
    "make_splits",
    "repeated_splits",
]

MIN_PER_SIDE = 2
"""Fewest samples allowed on either side of a split (a correlation needs more, but fitting needs 2)."""


class Split(NamedTuple):
    """One train/test split: a name (used in reports) and row positions of each side."""

    name: str
    train_idx: NDArray[np.intp]
    test_idx: NDArray[np.intp]


def _check_sides(protocol: str, n_train: int, n_test: int, detail: str) -> None:
    if n_train < MIN_PER_SIDE or n_test < MIN_PER_SIDE:
        raise ConfigError(
            f"{protocol}: {detail} gives {n_train} training and {n_test} test sample(s); "
            f"need at least {MIN_PER_SIDE} on each side"
        )


def _check_fraction(protocol: str, name: str, value: float) -> None:
    if not 0 < value < 1:
        raise ConfigError(f"{protocol}: {name} must be a fraction in (0, 1), got {value}")


def _n_test(n_samples: int, test_size: float) -> int:
    """Test-set size as scikit-learn's ShuffleSplit computes it (ceil of the fraction)."""
    return int(np.ceil(test_size * n_samples))


def kfold_splits(n_samples: int, *, n_splits: int = 5, seed: int = 0) -> Iterator[Split]:
    """Seeded shuffled K-fold: every sample is tested exactly once. Names ``fold0`` ... ``fold{k-1}``."""
    from sklearn.model_selection import KFold

    if n_splits < 2:
        raise ConfigError(f"kfold: n_splits must be at least 2, got {n_splits}")
    if n_samples < n_splits:
        raise ConfigError(f"kfold: {n_samples} sample(s) are fewer than n_splits={n_splits} folds")
    _check_sides(
        "kfold",
        n_samples - int(np.ceil(n_samples / n_splits)),
        n_samples // n_splits,
        f"{n_samples} samples in {n_splits} folds",
    )
    folds = KFold(n_splits, shuffle=True, random_state=seed).split(np.zeros((n_samples, 1)))
    for k, (train, test) in enumerate(folds):
        yield Split(f"fold{k}", train.astype(np.intp), test.astype(np.intp))


def repeated_splits(
    n_samples: int,
    *,
    n_repeats: int = 10,
    test_size: float = 0.2,
    seeds: Sequence[int] | None = None,
) -> Iterator[Split]:
    """Random train/test splits, one per seed (default seeds 0..n_repeats-1). Names ``split{seed}``.

    The literature's small-set protocol: 10 random 80/20 splits, report the median.
    """
    from sklearn.model_selection import ShuffleSplit

    _check_fraction("repeated-split", "test_size", test_size)
    seed_list = list(range(n_repeats)) if seeds is None else [int(s) for s in seeds]
    if not seed_list:
        raise ConfigError("repeated-split: needs at least one repeat (n_repeats >= 1 or a non-empty seeds list)")
    if len(set(seed_list)) != len(seed_list):
        raise ConfigError(f"repeated-split: seeds must be distinct, got {seed_list}")
    n_test = _n_test(n_samples, test_size)
    _check_sides("repeated-split", n_samples - n_test, n_test, f"test_size={test_size} on {n_samples} samples")
    X = np.zeros((n_samples, 1))
    for seed in seed_list:
        train, test = next(ShuffleSplit(n_splits=1, test_size=test_size, random_state=seed).split(X))
        yield Split(f"split{seed}", train.astype(np.intp), test.astype(np.intp))


def holdout_splits(
    ids: Sequence[str],
    *,
    test_fraction: float | None = 0.2,
    test_ids: Sequence[str] | None = None,
    seed: int = 0,
) -> Iterator[Split]:
    """One split named ``holdout``: explicit ``test_ids`` (e.g. an official test list) or a seeded fraction.

    Unknown or duplicated test ids raise :class:`ConfigError` listing them.
    """
    n_samples = len(ids)
    if test_ids is not None:
        where = {name: i for i, name in enumerate(ids)}
        missing = [t for t in test_ids if t not in where]
        if missing:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise ConfigError(f"holdout: {len(missing)} test id(s) are not among the {n_samples} samples: {shown}")
        test = np.asarray(sorted({where[t] for t in test_ids}), dtype=np.intp)
        if test.size != len(test_ids):
            raise ConfigError("holdout: test_ids lists some ids more than once")
        train = np.setdiff1d(np.arange(n_samples), test).astype(np.intp)
        _check_sides("holdout", train.size, test.size, f"{len(test_ids)} test ids of {n_samples}")
        yield Split("holdout", train, test)
        return
    if test_fraction is None:
        raise ConfigError("holdout: give test_fraction or test_ids")
    _check_fraction("holdout", "test_fraction", test_fraction)
    split = next(repeated_splits(n_samples, seeds=[seed], test_size=test_fraction))
    yield Split("holdout", split.train_idx, split.test_idx)


def cross_dataset_split(
    train_ids: Sequence[str], test_ids: Sequence[str], *, name: str = "cross-dataset"
) -> tuple[list[str], Split]:
    """Train on all of dataset A, test on all of dataset B.

    Returns the combined id list (A's ids then B's) and the split over its positions: build the
    feature matrix and targets in that order. Ids present in both lists draw a warning: the same
    relative path in two datasets may be two different videos, or one video leaking into the test.
    """
    _check_sides("cross-dataset", len(train_ids), len(test_ids), "the two label lists")
    overlap = sorted(set(train_ids) & set(test_ids))
    if overlap:
        shown = ", ".join(overlap[:10]) + (" ..." if len(overlap) > 10 else "")
        warnings.warn(
            f"cross-dataset: {len(overlap)} id(s) are in both the training and the test list: {shown}",
            UserWarning,
            stacklevel=2,
        )
    n_train, n_test = len(train_ids), len(test_ids)
    split = Split(
        name,
        np.arange(n_train, dtype=np.intp),
        np.arange(n_train, n_train + n_test, dtype=np.intp),
    )
    return [*train_ids, *test_ids], split


def _group_codes(groups: Sequence[str]) -> tuple[NDArray[np.intp], int]:
    _, codes = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    return codes.astype(np.intp), int(codes.max()) + 1 if len(codes) else 0


def grouped_kfold_splits(groups: Sequence[str], *, n_splits: int = 5, seed: int = 0) -> Iterator[Split]:
    """K-fold over groups (e.g. source videos): a group is never on both sides. Names ``gfold{k}``.

    Groups are relabelled in a seeded random order before scikit-learn's size-balancing
    ``GroupKFold``, so the seed changes which groups share a fold on any scikit-learn version.
    """
    from sklearn.model_selection import GroupKFold

    if n_splits < 2:
        raise ConfigError(f"grouped-kfold: n_splits must be at least 2, got {n_splits}")
    codes, n_groups = _group_codes(groups)
    if n_groups < n_splits:
        raise ConfigError(f"grouped-kfold: {n_groups} group(s) are fewer than n_splits={n_splits} folds")
    shuffled = np.random.default_rng(seed).permutation(n_groups)[codes]
    X = np.zeros((codes.size, 1))
    for k, (train, test) in enumerate(GroupKFold(n_splits).split(X, groups=shuffled)):
        _check_sides("grouped-kfold", train.size, test.size, f"fold {k} of {n_groups} groups")
        yield Split(f"gfold{k}", train.astype(np.intp), test.astype(np.intp))


def grouped_repeated_splits(
    groups: Sequence[str],
    *,
    n_repeats: int = 10,
    test_size: float = 0.2,
    seeds: Sequence[int] | None = None,
) -> Iterator[Split]:
    """Random group-disjoint splits, one per seed; ``test_size`` is a fraction of the *groups*.

    Names ``gsplit{seed}``.
    """
    from sklearn.model_selection import GroupShuffleSplit

    _check_fraction("grouped-repeated-split", "test_size", test_size)
    codes, n_groups = _group_codes(groups)
    n_test_groups = _n_test(n_groups, test_size)
    if n_groups - n_test_groups < 1 or n_test_groups < 1:
        raise ConfigError(
            f"grouped-repeated-split: test_size={test_size} of {n_groups} group(s) leaves "
            f"{n_groups - n_test_groups} training and {n_test_groups} test group(s); need at least 1 each"
        )
    seed_list = list(range(n_repeats)) if seeds is None else [int(s) for s in seeds]
    if not seed_list:
        raise ConfigError("grouped-repeated-split: needs at least one repeat")
    X = np.zeros((codes.size, 1))
    for seed in seed_list:
        splitter = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
        train, test = next(splitter.split(X, groups=codes))
        _check_sides("grouped-repeated-split", train.size, test.size, f"seed {seed} on {n_groups} groups")
        yield Split(f"gsplit{seed}", train.astype(np.intp), test.astype(np.intp))


PROTOCOLS: dict[str, tuple[str, Any]] = {
    # name: (what the generator takes, generator)
    "kfold": ("n", kfold_splits),
    "repeated-split": ("n", repeated_splits),
    "holdout": ("ids", holdout_splits),
    "grouped-kfold": ("groups", grouped_kfold_splits),
    "grouped-repeated-split": ("groups", grouped_repeated_splits),
}


def make_splits(
    protocol: str,
    ids: Sequence[str],
    *,
    groups: Sequence[str] | None = None,
    params: dict[str, Any] | None = None,
) -> list[Split]:
    """All splits of ``protocol`` (a name in :data:`PROTOCOLS`) over ``ids``, as a list.

    For configs: unknown protocol names and parameters raise :class:`ConfigError` with suggestions;
    grouped protocols need ``groups`` (one per id). Cross-dataset evaluation is
    :func:`cross_dataset_split`, as it takes two id lists.
    """
    import inspect

    if protocol not in PROTOCOLS:
        close = difflib.get_close_matches(protocol, list(PROTOCOLS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown protocol '{protocol}'{hint}; available: {', '.join(PROTOCOLS)}")
    takes, generator = PROTOCOLS[protocol]
    params = dict(params or {})
    allowed = [p for p in inspect.signature(generator).parameters if p not in ("n_samples", "ids", "groups")]
    for key in params:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"protocol '{protocol}' has no parameter '{key}'{hint}; allowed: {', '.join(allowed)}")
    if takes == "n":
        return list(generator(len(ids), **params))
    if takes == "ids":
        return list(generator(ids, **params))
    if groups is None:
        raise ConfigError(f"protocol '{protocol}' needs a group per sample (e.g. a group column in the labels)")
    if len(groups) != len(ids):
        raise ConfigError(f"protocol '{protocol}': {len(groups)} groups for {len(ids)} samples")
    return list(generator(groups, **params))
