"""Learner registry: a name in a config file -> a configured estimator.

Why: configs and the CLI name learners by string. One small registry, filled by explicit imports (no
plugin discovery, no work at import time): duplicate names raise, unknown names and unknown parameters
raise :class:`~vqstack.errors.ConfigError` with a "did you mean" suggestion, and parameter values are
checked right away (not an hour later when ``fit`` runs).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import InvalidParameterError

from vqstack.errors import ConfigError
from vqstack.fusion.learners import AverageFusion, LightGBMRegressor, RidgeRegressor, SVRRegressor
from vqstack.fusion.stacking import StackingFusion

__all__ = ["available_learners", "learner_class", "make_learner", "register_learner"]

_REGISTRY: dict[str, type[BaseEstimator]] = {}


def register_learner(name: str, cls: type[BaseEstimator]) -> None:
    """Add ``cls`` under ``name``; a name that is already taken raises :class:`ValueError`."""
    if name in _REGISTRY:
        raise ValueError(f"learner name {name!r} is already registered to {_REGISTRY[name].__name__}")
    _REGISTRY[name] = cls


for _name, _cls in (
    ("average", AverageFusion),
    ("svr", SVRRegressor),
    ("lightgbm", LightGBMRegressor),
    ("ridge", RidgeRegressor),
    ("stacking", StackingFusion),
):
    register_learner(_name, _cls)


def available_learners() -> list[str]:
    """Registered learner names, sorted."""
    return sorted(_REGISTRY)


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def learner_class(name: str) -> type[BaseEstimator]:
    """The class registered under ``name``; unknown names raise :class:`ConfigError`."""
    try:
        return _REGISTRY[name]
    except KeyError:
        names = available_learners()
        raise ConfigError(f"unknown learner '{name}'{_suggest(name, names)}; available: {', '.join(names)}") from None


def make_learner(name: str, params: Mapping[str, Any] | None = None) -> BaseEstimator:
    """A new, unfitted estimator ``name`` with ``params``, validated now.

    Raises :class:`ConfigError` naming the learner and the parameter when the name or a parameter is
    unknown or a value is invalid (lists from YAML are accepted where the learner takes sequences).
    """
    cls = learner_class(name)
    params = dict(params or {})
    allowed = sorted(cls().get_params(deep=False))
    for key in params:
        if key not in allowed:
            raise ConfigError(
                f"learner '{name}' has no parameter '{key}'{_suggest(key, allowed)}; allowed: {', '.join(allowed)}"
            )
    estimator = cls(**params)
    try:
        estimator._validate_params()
    except InvalidParameterError as exc:
        raise ConfigError(f"learner '{name}': {exc}") from exc
    if cls is StackingFusion:
        base = params.get("base_learner")
        for item in base if isinstance(base, list | tuple) else [base]:
            if isinstance(item, str):
                learner_class(item)
    return estimator
