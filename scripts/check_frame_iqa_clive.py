"""Real check: accuracy of the ``frame_iqa`` features (default: EfficientNet-Lite0) on a CLIVE subset.

Protocol: each photo goes through the extractor exactly as ``vqstack extract --feat frame_iqa`` runs it
(:func:`vqstack.extract.pipeline.extract_video`, one-frame video, native resolution); the per-frame
vector is the image's feature vector. An RBF SVR (:class:`vqstack.fusion.learners.SVRRegressor`:
standardisation, C / gamma / epsilon chosen by 5-fold inner CV on the training part only) is fitted on
10 random 80/20 splits (seeds 0..9); median SROCC / PLCC with min, max and IQR are printed. PLCC is
reported raw and after the 4-parameter logistic fit (VQEG).

With ``--nss`` the handcrafted :func:`vqstack.extract.nss_features.frame_features` are added, fused two
ways: concatenated into one SVR, and stacked (one SVR per block, non-negative linear meta-learner on
out-of-fold predictions, :class:`vqstack.fusion.stacking.StackingFusion`).

Features are cached under /tmp keyed by the extractor identity and a hash of its sources, so re-runs
only fit models. ``--opt key=value`` changes the extractor config (ablations), e.g. ``--opt scales=[1]``.

Usage::

    python scripts/check_frame_iqa_clive.py [--data ../shared/data/clive-dev] [--nss] [--opt KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.optimize import curve_fit
from scipy.stats import pearsonr, spearmanr
from sklearn.model_selection import train_test_split

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "clive-dev"  # ../shared beside the repo

log = logging.getLogger("check_frame_iqa_clive")

SVR_GRIDS = {"C_grid": (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0), "gamma_grid": (0.125, 0.25, 0.5, 1.0, 2.0, 4.0),
             "epsilon_grid": (0.05, 0.2, 0.5)}


def _sources_hash(*modules: object) -> str:
    h = hashlib.sha256()
    for module in modules:
        h.update(Path(module.__file__).read_bytes())  # type: ignore[attr-defined]
    return h.hexdigest()[:16]


def read_mos(data: Path) -> tuple[list[str], np.ndarray]:
    with open(data / "mos.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["image"] for r in rows], np.array([float(r["mos"]) for r in rows])


def frame_iqa_features(data: Path, names: list[str], opts: dict[str, object]) -> tuple[np.ndarray, float]:
    """``[N, D]`` features through the extractor (cached), and seconds per image when computed."""
    import torch

    from vqstack.extract import frame_iqa
    from vqstack.extract.pipeline import extract_video
    from vqstack.models import efficientnet_lite

    torch.set_num_threads(2)
    ex = frame_iqa.FrameIQAExtractor(opts or None)
    key = json.dumps(ex.identity(), sort_keys=True) + _sources_hash(frame_iqa, efficientnet_lite)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"frame_iqa_clive_{digest}_{len(names)}.npz"
    if cache.exists():
        log.info("frame_iqa features from cache %s", cache)
        with np.load(cache) as z:
            return z["x"], float(z["seconds"])
    log.info("frame_iqa config: %s", ex.config_dict())
    rows, t0 = [], time.perf_counter()
    for i, name in enumerate(names):
        feats = extract_video(data / "images" / name, [ex]).features["frame_iqa"]
        rows.append(feats.steps[0])
        if (i + 1) % 50 == 0:
            log.info("%d/%d images, %.2f s per image", i + 1, len(names), (time.perf_counter() - t0) / (i + 1))
    seconds = (time.perf_counter() - t0) / len(names)
    x = np.stack(rows)
    np.savez(cache, x=x, seconds=seconds)
    log.info("computed %s in %.2f s per image; cached at %s", x.shape, seconds, cache)
    return x, seconds


def nss_features(data: Path, names: list[str]) -> np.ndarray:
    """Handcrafted per-image NSS features (read-only use of :mod:`vqstack.extract.nss_features`)."""
    from PIL import Image

    from vqstack.extract import nss_features as nf

    cache = Path(tempfile.gettempdir()) / f"frame_iqa_clive_nss_{_sources_hash(nf)}_{len(names)}.npy"
    if cache.exists():
        return np.load(cache)
    x = np.stack([nf.frame_features(np.asarray(Image.open(data / "images" / n).convert("RGB"))) for n in names])
    np.save(cache, x)
    return x


def informative(x: np.ndarray) -> np.ndarray:
    """Drop columns that are constant or non-finite over the set (they carry nothing and break scaling)."""
    return x[:, np.isfinite(x).all(axis=0) & (x.std(axis=0) > 0)]


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG 4-parameter logistic mapping predictions to MOS."""
    with np.errstate(over="ignore"):
        return (b1 - b2) / (1.0 + np.exp(-(x - b3) / np.abs(b4))) + b2


def fitted_plcc(pred: np.ndarray, mos: np.ndarray) -> float:
    """PLCC after the logistic fit (initial beta = [max MOS, min MOS, mean prediction, 0.5])."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            beta, _ = curve_fit(logistic4, pred, mos, p0=[mos.max(), mos.min(), pred.mean(), 0.5], maxfev=20000)
        return float(pearsonr(logistic4(pred, *beta), mos)[0])
    except RuntimeError:
        return float(pearsonr(pred, mos)[0])


def make_svr(seed: int) -> Any:
    from vqstack.fusion.learners import SVRRegressor

    return SVRRegressor(**SVR_GRIDS, cv=5, random_state=seed, n_jobs=1)


def make_stack(groups: list[str], seed: int) -> Any:
    from vqstack.fusion.stacking import StackingFusion

    return StackingFusion(groups=groups, base_learner=make_svr(seed), cv=5, random_state=seed)


def evaluate(
    label: str, x: np.ndarray, mos: np.ndarray, splits: int, factory: Callable[[int], Any]
) -> dict[str, float]:
    """Median and spread of SROCC / PLCC over ``splits`` random 80/20 splits."""
    res: dict[str, list[float]] = {"SROCC": [], "PLCC": [], "PLCC-fit": []}
    t0 = time.perf_counter()
    for seed in range(splits):
        x_tr, x_te, y_tr, y_te = train_test_split(x, mos, test_size=0.2, random_state=seed)
        pred = factory(seed).fit(x_tr, y_tr).predict(x_te)
        res["SROCC"].append(float(spearmanr(pred, y_te)[0]))
        res["PLCC"].append(float(pearsonr(pred, y_te)[0]))
        res["PLCC-fit"].append(fitted_plcc(pred, y_te))
    parts, out = [], {}
    for key, vals in res.items():
        v = np.asarray(vals)
        q1, q3 = np.percentile(v, [25, 75])
        out[key] = float(np.median(v))
        parts.append(f"{key} {np.median(v):.3f} [min {v.min():.3f} max {v.max():.3f} IQR {q3 - q1:.3f}]")
    print(f"{label:24s} d={x.shape[1]:5d}  " + " | ".join(parts) + f"  ({time.perf_counter() - t0:.0f} s)",
          flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                        help="frame_iqa config change (YAML value), e.g. scales=[1] or backbone=resnet50")
    parser.add_argument("--nss", action="store_true", help="also fuse with the handcrafted nss features")
    parser.add_argument("--splits", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    opts = {}
    for pair in args.opt:
        key, _, value = pair.partition("=")
        opts[key] = yaml.safe_load(value)
    names, mos = read_mos(args.data)
    x, seconds = frame_iqa_features(args.data, names, opts)
    x = informative(x)
    print(f"{len(names)} images; frame_iqa {x.shape[1]}-d, {seconds:.2f} s per image (decode + network)")
    evaluate("frame_iqa SVR", x, mos, args.splits, make_svr)
    if args.nss:
        n = informative(nss_features(args.data, names))
        evaluate("nss SVR", n, mos, args.splits, make_svr)
        both = np.concatenate([x, n], axis=1)
        evaluate("concat SVR", both, mos, args.splits, make_svr)
        groups = [f"0:{x.shape[1]}", f"{x.shape[1]}:{both.shape[1]}"]
        evaluate("stacked SVRs", both, mos, args.splits, lambda seed: make_stack(groups, seed))


if __name__ == "__main__":
    main()
