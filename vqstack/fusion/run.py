"""``fuse fit`` and the model bundle: from a validated config to metrics, reports and a saved model.

Why here: the learners, protocols and reports are reusable pieces; this module is the one place
that joins them to the feature store, so what a bundle needs (tables, poolings, widths, versions)
is recorded exactly once, and ``predict`` refuses features that do not match.
No torch here: extraction for ``fuse predict`` happens in the command layer, through the cache.
"""

from __future__ import annotations

import json
import logging
import platform
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vqstack import __version__
from vqstack.config import to_dict
from vqstack.errors import ConfigError, StoreError
from vqstack.features.store import FeatureStore
from vqstack.fusion.config import FeatureGroup, FusionConfig, LabelsConfig, LearnerConfig
from vqstack.fusion.evaluation import SplitResult, run_protocol, summarize
from vqstack.fusion.labels import Labels, read_labels
from vqstack.fusion.preprocessing import NonFiniteHandler, check_features, make_preprocessor, with_preprocessing
from vqstack.fusion.protocols import cross_dataset_split, make_splits
from vqstack.fusion.registry import make_learner

log = logging.getLogger(__name__)
BUNDLE_FORMAT = 1


@dataclass(frozen=True)
class FeatureSpec:
    """Exactly which stored features a fitted model consumes (one per feature group)."""

    group: str
    table: str
    extractor: str
    version: str | None
    config: dict[str, Any]
    weights_sha256: str | None
    pooling: list[str]
    n_columns: int
    columns: list[str] = field(default_factory=list)


def pick_table(store: FeatureStore, group: FeatureGroup) -> Any:
    """The one table a feature group means: by table name, or extractor name + config subset."""
    found = store.find_tables(group.extractor)
    if group.config and len(found) > 1:
        found = [t for t in found if all((t.config or {}).get(k) == v for k, v in group.config.items())]
    if not found:
        raise StoreError(
            f"feature group '{group.label}': no table for '{group.extractor}'"
            + (f" with config {group.config}" if group.config else "")
            + f" in {store.root}; run `vqstack extract --feat {group.extractor}` first"
        )
    if len(found) > 1:
        names = ", ".join(f"{t.name} (config {t.config})" for t in found)
        raise StoreError(
            f"feature group '{group.label}': '{group.extractor}' has several tables in {store.root}: {names}; "
            "name the table, or give 'config:' to pick one"
        )
    return found[0]


def load_features(
    store: FeatureStore, groups: Sequence[FeatureGroup], ids: Sequence[str], videos_root: Path | None
) -> tuple[np.ndarray, list[FeatureSpec]]:
    """Concatenate every group's pooled features for ``ids`` (rows aligned to ``ids``)."""
    blocks, specs = [], []
    for group in groups:
        info = pick_table(store, group)
        X, columns = store.read_matrix(list(ids), info.name, group.pooling, videos_root=videos_root)
        blocks.append(X)
        specs.append(
            FeatureSpec(
                group=group.label,
                table=info.name,
                extractor=info.extractor,
                version=info.version,
                config=dict(info.config or {}),
                weights_sha256=info.weights_sha256,
                pooling=list(group.pooling),
                n_columns=X.shape[1],
                columns=list(columns),
            )
        )
    return np.concatenate(blocks, axis=1), specs


def group_slices(specs: Sequence[FeatureSpec]) -> list[list[int]]:
    """Column indices of each group in the concatenated matrix (for stacking)."""
    out, start = [], 0
    for spec in specs:
        out.append(list(range(start, start + spec.n_columns)))
        start += spec.n_columns
    return out


def build_estimator(learner: LearnerConfig, cfg: FusionConfig, specs: Sequence[FeatureSpec]) -> Any:
    params = dict(learner.params)
    if learner.name == "stacking":
        # Preprocess each group inside the stacker: a filter dropping columns in front of it would
        # shift the group indices. In front stays only the NaN/inf check, which keeps every column.
        params.setdefault("groups", group_slices(specs))
        params["base_preprocessor"] = make_preprocessor(cfg.preprocess)
        from sklearn.pipeline import Pipeline

        return Pipeline([("nonfinite", NonFiniteHandler(policy=cfg.preprocess.nonfinite)),
                         ("learner", make_learner(learner.name, params))])
    estimator = make_learner(learner.name, params)
    if learner.name in ("average",):
        return estimator  # branch scores are used as they are
    # Column names reach learners that use them (LightGBM `monotone` patterns), after preprocessing.
    columns = [c for spec in specs for c in spec.columns]
    names = columns if columns and len(columns) == sum(spec.n_columns for spec in specs) else None
    return with_preprocessing(estimator, cfg.preprocess, feature_names=names)


def _read(labels: LabelsConfig) -> Labels:
    return read_labels(
        labels.path, id_column=labels.id_column, score_column=labels.score_column, group_column=labels.group_column
    )


@dataclass
class FitOutcome:
    results: list[SplitResult]
    summary: dict[str, Any]
    written: dict[str, Path]
    bundle_path: Path
    n_samples: int
    n_features: int


def fit_from_config(cfg: FusionConfig, *, output: Path | None = None, plots: bool = True) -> FitOutcome:
    """Evaluate every learner under the protocol, write the reports, fit the final model, save it."""
    from vqstack.fusion.report import write_report

    out = Path(output or cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    store = FeatureStore(cfg.store)
    if not Path(cfg.store).is_dir():
        raise StoreError(f"{cfg.store}: no feature store here (run `vqstack extract` first)")
    labels = _read(cfg.labels)
    X, specs = load_features(store, cfg.features, labels.ids, cfg.labels.videos_root)
    y, ids, groups = labels.mos, list(labels.ids), labels.groups
    if cfg.protocol.name == "cross-dataset":
        assert cfg.protocol.test_labels is not None
        test = _read(cfg.protocol.test_labels)
        X_test, _ = load_features(store, cfg.features, test.ids, cfg.protocol.test_labels.videos_root)
        X = np.concatenate([X, X_test])
        y = np.concatenate([y, test.mos])
        ids = ids + [f"test:{i}" for i in test.ids]
        groups = None
        _, cross = cross_dataset_split(labels.ids, test.ids)
        splits = [cross]
        split_ids = ids
    else:
        params = dict(cfg.protocol.params)
        seeded = ("kfold", "holdout", "grouped-kfold")
        if cfg.protocol.name in seeded and "seed" not in params:
            params["seed"] = cfg.seed
        splits = make_splits(cfg.protocol.name, ids, groups=groups, params=params)
        split_ids = ids
    columns = [c for spec in specs for c in spec.columns]
    check_features(X, ids=ids, feature_names=columns if len(columns) == X.shape[1] else None,
                   nonfinite=cfg.preprocess.nonfinite, source=str(cfg.store))
    results: list[SplitResult] = []
    for learner in cfg.learners:
        t0 = time.perf_counter()
        results += run_protocol(
            lambda lc=learner: build_estimator(lc, cfg, specs),
            X,
            y,
            splits,
            learner=learner.display,
            groups=groups,
            seed=cfg.seed,
        )
        log.info("%s: %d splits in %.1f s", learner.display, len(splits), time.perf_counter() - t0)
    summary = summarize(results)
    final = cfg.final_learner
    n_train = len(labels.ids)
    estimator = build_estimator(final, cfg, specs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        estimator.fit(X[:n_train], y[:n_train])
    bundle = {
        "format": BUNDLE_FORMAT,
        "estimator": estimator,
        "learner": asdict(final),
        "features": [asdict(s) for s in specs],
        "preprocess": asdict(cfg.preprocess),
        "trained_on": {
            "labels": str(cfg.labels.path),
            "n_samples": n_train,
            "mos_range": [float(np.min(labels.mos)), float(np.max(labels.mos))],
        },
        "summary": summary.get(final.display, {}),
        "versions": _versions(),
        "config": to_dict(cfg),
    }
    bundle_path = save_bundle(bundle, out / "model.joblib")
    extra = {
        "config": to_dict(cfg),
        "features": [asdict(s) | {"columns": len(s.columns)} for s in specs],
        "n_samples": len(y),
        "n_features": int(X.shape[1]),
        "bundle": str(bundle_path),
        "versions": _versions(),
    }
    written = write_report(
        results, out, ids=split_ids, title=f"Fusion: {', '.join(s.group for s in specs)}", extra=extra, plots=plots
    )
    return FitOutcome(results, summary, written, bundle_path, len(y), int(X.shape[1]))


def _report_warnings(messages: list[str]) -> None:
    """One line per distinct warning (with how many splits raised it), not one per split."""
    counts: dict[str, int] = {}
    for message in messages:
        text = message.split(": ", 1)[1] if " / " in message.split(": ", 1)[0] else message
        counts[text] = counts.get(text, 0) + 1
    for text, n in counts.items():
        log.warning("%s (%d time%s)", text, n, "" if n == 1 else "s")


def _versions() -> dict[str, str]:
    import joblib
    import sklearn

    out = {
        "vqstack": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "joblib": joblib.__version__,
    }
    try:
        import lightgbm

        out["lightgbm"] = lightgbm.__version__
    except ImportError:
        pass
    return out


def save_bundle(bundle: dict[str, Any], path: Path) -> Path:
    import joblib

    tmp = path.with_suffix(".tmp")
    joblib.dump(bundle, tmp)
    tmp.replace(path)
    (path.with_suffix(".json")).write_text(
        json.dumps({k: v for k, v in bundle.items() if k != "estimator"}, indent=1, default=str)
    )
    return path


def load_bundle(path: str | Path) -> dict[str, Any]:
    import joblib

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: model bundle not found")
    try:
        bundle = joblib.load(path)
    except Exception as exc:  # unpickling errors come in many types
        raise ConfigError(f"{path}: not a vqstack model bundle ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise ConfigError(f"{path}: not a vqstack model bundle (format {BUNDLE_FORMAT} expected)")
    return bundle


def bundle_specs(bundle: dict[str, Any]) -> list[FeatureSpec]:
    return [FeatureSpec(**s) for s in bundle["features"]]


def bundle_matrix(
    store: FeatureStore, bundle: dict[str, Any], ids: Sequence[str], videos_root: Path | None = None
) -> np.ndarray:
    """The matrix a bundle was trained on, for new ``ids``: same tables, poolings and widths, or an error."""
    blocks = []
    tables = {t.name: t for t in store.tables()}
    for spec in bundle_specs(bundle):
        if spec.table not in tables:
            same = [t for t in tables.values() if t.extractor == spec.extractor]
            listed = ", ".join(f"{t.name} (version {t.version}, config {t.config})" for t in same)
            hint = f"; the store has {listed}" if same else ""
            raise StoreError(
                f"the model needs table {spec.table} ({spec.extractor} version {spec.version}, config {spec.config}, "
                f"weights {spec.weights_sha256}) which {store.root} lacks{hint}"
            )
        X, _ = store.read_matrix(list(ids), spec.table, spec.pooling, videos_root=videos_root)
        if X.shape[1] != spec.n_columns:
            raise StoreError(
                f"table {spec.table} gives {X.shape[1]} columns for pooling {spec.pooling}; the model was fit on "
                f"{spec.n_columns}"
            )
        blocks.append(X)
    return np.concatenate(blocks, axis=1)


def predict(bundle: dict[str, Any], X: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(X)):
        rows = sorted(set(np.argwhere(~np.isfinite(X))[:, 0].tolist()))
        raise ConfigError(f"features of {len(rows)} video(s) are NaN or infinite (rows {rows[:10]}); cannot score them")
    return np.asarray(bundle["estimator"].predict(X), dtype=np.float64)
