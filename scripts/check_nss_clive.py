"""Dev check: accuracy of the handcrafted NSS frame features on a CLIVE subset.

Protocol: per-image :func:`vqstack.extract.nss_features.frame_features`, standardised, RBF SVR whose
C / gamma / epsilon are chosen by 5-fold GridSearchCV on the training part only; 10 random 80/20 splits
(seeds 0..9); median SROCC / PLCC with min, max and IQR. LightGBM (modest fixed parameters) too, if
installed. PLCC is reported raw and after the 4-parameter logistic fit of predictions to MOS (VQEG).

Features are cached in /tmp keyed by a hash of the extractor sources, so re-runs only fit models.

Usage::

    python scripts/check_nss_clive.py [--data ../shared/data/clive-dev] [--prefix brisque_s1 ...] [--bench]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy.optimize import curve_fit
from scipy.stats import pearsonr, spearmanr
from sklearn.model_selection import GridSearchCV, KFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

from vqstack.extract import nss_features
from vqstack.extract.nss_features import FRAME_FEATURE_NAMES, frame_features, temporal_features

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "clive-dev"  # ../shared beside the repo

log = logging.getLogger("check_nss_clive")

SVR_GRID = {
    "svr__C": [2.0**k for k in range(-2, 9, 2)],
    "svr__gamma": [2.0**k for k in range(-10, -1, 2)],
    "svr__epsilon": [1.0, 4.0],
}


def _source_hash() -> str:
    here = Path(nss_features.__file__).parent
    h = hashlib.sha256()
    for name in ("nss_features.py", "nss_fit.py"):
        path = here / name
        if path.exists():
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def load_features(data: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features [N, D] and MOS [N] of every image in ``data/mos.csv`` (cached under /tmp)."""
    with open(data / "mos.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    names = [r["image"] for r in rows]
    mos = np.array([float(r["mos"]) for r in rows])
    cache = Path("/tmp") / f"nss_clive_{_source_hash()}_{len(names)}.npy"
    if cache.exists():
        log.info("features from cache %s", cache)
        return np.load(cache), mos, names
    t0 = time.perf_counter()
    feats = np.stack(
        [frame_features(np.asarray(Image.open(data / "images" / n).convert("RGB"))) for n in names]
    )
    log.info("computed %s features in %.1f s; cached at %s", feats.shape, time.perf_counter() - t0, cache)
    np.save(cache, feats)
    return feats, mos, names


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG 4-parameter logistic mapping predictions to MOS."""
    return (b1 - b2) / (1.0 + np.exp(-(x - b3) / np.abs(b4))) + b2


def fitted_plcc(pred: np.ndarray, mos: np.ndarray) -> float:
    """PLCC after the 4-parameter logistic fit (initial beta = [max MOS, min MOS, mean pred, 0.5])."""
    beta0 = [mos.max(), mos.min(), pred.mean(), max(pred.std(), 1e-3) / 2.0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            beta, _ = curve_fit(logistic4, pred, mos, p0=beta0, maxfev=20000)
            fitted = logistic4(pred, *beta)
        return float(pearsonr(fitted, mos)[0])
    except RuntimeError:
        return float(pearsonr(pred, mos)[0])


def fit_svr(x_tr: np.ndarray, y_tr: np.ndarray, seed: int) -> GridSearchCV:
    pipe = make_pipeline(StandardScaler(), SVR(kernel="rbf"))
    search = GridSearchCV(
        pipe, SVR_GRID, cv=KFold(5, shuffle=True, random_state=seed), scoring="neg_mean_squared_error", n_jobs=1
    )
    return search.fit(x_tr, y_tr)


def fit_lgbm(x_tr: np.ndarray, y_tr: np.ndarray, seed: int) -> Any:
    import lightgbm as lgb

    model = lgb.LGBMRegressor(
        n_estimators=400,
        learning_rate=0.03,
        num_leaves=8,
        min_child_samples=10,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.5,
        reg_lambda=1.0,
        random_state=seed,
        n_jobs=1,
        verbose=-1,
    )
    return model.fit(x_tr, y_tr)


def summarise(label: str, values: dict[str, list[float]]) -> None:
    parts = []
    for key, vals in values.items():
        v = np.asarray(vals)
        q1, q3 = np.percentile(v, [25, 75])
        parts.append(f"{key} med {np.median(v):.3f} [min {v.min():.3f} max {v.max():.3f} IQR {q3 - q1:.3f}]")
    print(f"{label:9s} " + " | ".join(parts))


def evaluate(x: np.ndarray, mos: np.ndarray, seeds: range, use_lgbm: bool) -> None:
    models = {"SVR": fit_svr}
    if use_lgbm:
        try:
            import lightgbm  # noqa: F401

            models["LightGBM"] = fit_lgbm
        except ImportError:
            log.warning("lightgbm not installed; skipped")
    for label, fit in models.items():
        res: dict[str, list[float]] = {"SROCC": [], "PLCC": [], "PLCC-fit": []}
        for seed in seeds:
            x_tr, x_te, y_tr, y_te = train_test_split(x, mos, test_size=0.2, random_state=seed)
            pred = fit(x_tr, y_tr, seed).predict(x_te)
            res["SROCC"].append(spearmanr(pred, y_te)[0])
            res["PLCC"].append(pearsonr(pred, y_te)[0])
            res["PLCC-fit"].append(fitted_plcc(pred, y_te))
        summarise(label, res)


def bench(data: Path, rounds: int = 5, frames: int = 20) -> None:
    """Frames per second per core at 960x540 (one thread): best and median of ``rounds`` rounds.

    Both wall-clock and process CPU time are shown; on a shared machine the CPU-time figure is the one
    that says what one core can do.
    """
    from threadpoolctl import threadpool_limits

    first = sorted((data / "images").iterdir())[0]
    frame = np.asarray(Image.open(first).convert("RGB").resize((960, 540), Image.BICUBIC))
    nxt = np.roll(frame, 4, axis=1)
    jobs = {"frame": lambda: frame_features(frame), "temporal": lambda: temporal_features(frame, nxt)}
    with threadpool_limits(1):
        for label, fn in jobs.items():
            fn()
            wall, cpu = [], []
            for _ in range(rounds):
                w0, c0 = time.perf_counter(), time.process_time()
                for _ in range(frames):
                    fn()
                wall.append((time.perf_counter() - w0) / frames)
                cpu.append((time.process_time() - c0) / frames)
            print(
                f"{label:9s} 960x540: CPU {1e3 * min(cpu):.1f} ms best / {1e3 * np.median(cpu):.1f} ms median "
                f"({1 / min(cpu):.1f} / {1 / np.median(cpu):.1f} frames/s/core); "
                f"wall {1e3 * min(wall):.1f} / {1e3 * np.median(wall):.1f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--prefix", nargs="*", default=None, help="keep only features with these name prefixes")
    parser.add_argument("--drop", nargs="*", default=None, help="drop features with these name prefixes")
    parser.add_argument("--no-lgbm", action="store_true")
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--bench", action="store_true", help="also time the extractor at 960x540, one thread")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    feats, mos, _ = load_features(args.data)
    keep = np.ones(len(FRAME_FEATURE_NAMES), dtype=bool)
    if args.prefix:
        keep &= np.array([n.startswith(tuple(args.prefix)) for n in FRAME_FEATURE_NAMES])
    if args.drop:
        keep &= ~np.array([n.startswith(tuple(args.drop)) for n in FRAME_FEATURE_NAMES])
    print(f"{feats.shape[0]} images, {int(keep.sum())} of {feats.shape[1]} features")
    evaluate(feats[:, keep], mos, range(args.splits), use_lgbm=not args.no_lgbm)
    if args.bench:
        bench(args.data)


if __name__ == "__main__":
    main()
