"""Benchmark the fusion stage: fit time of SVR (with its inner search) and LightGBM, and import cost.

Why: fusion runs once per experiment but over 10 splits, on a few thousand pooled features per video;
this measures what that costs on a small shared machine, and checks that ``import vqstack.fusion``
stays cheap and never pulls in torch.

Data: ``n_samples x n_features`` standard-normal features (seeded); the target is a nonlinear function
of five of them plus noise, rescaled to a 1-5 MOS-like range. Protocol: repeated 80/20 splits (seeds
0..9). Writes ``bench_fusion.json`` and ``bench_fusion.md`` to ``--out``.

``--omp-wait-policy passive`` sets ``OMP_WAIT_POLICY=PASSIVE`` before LightGBM is imported: LightGBM's
OpenMP threads otherwise spin while waiting, and on a machine whose cores are busy with other work
(as on a shared 2-core box) a 2-thread fit can take 10-50x longer than usual. The load average before
and after each learner is recorded, because figures on a shared machine mean little without it.

Usage: ``python scripts/bench_fusion.py [--out bench_results] [--n-jobs 2]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("bench_fusion")

IMPORT_PROBE = """
import sys, time
t = time.perf_counter()
import {module}
elapsed = time.perf_counter() - t
print(elapsed, 'torch' in sys.modules, 'lightgbm' in sys.modules, 'matplotlib' in sys.modules)
"""


def synthetic(n_samples: int, n_features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded features and a nonlinear MOS-like target (1..5) that depends on five columns."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features))
    signal = (
        np.tanh(1.5 * X[:, 0])
        + 0.4 * X[:, 1] ** 2
        + 0.5 * np.sin(2 * X[:, 2])
        + 0.4 * X[:, 3] * X[:, 4]
        + rng.normal(0, 0.25, n_samples)
    )
    y = 1 + 4 * (signal - signal.min()) / np.ptp(signal)
    return X, y


def time_import(module: str, repeats: int) -> dict[str, Any]:
    """Median wall time of ``import module`` in fresh interpreters, and which heavy modules it loaded."""
    times: list[float] = []
    loaded: dict[str, bool] = {}
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", IMPORT_PROBE.format(module=module)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        times.append(float(out[0]))
        loaded = {"torch": out[1] == "True", "lightgbm": out[2] == "True", "matplotlib": out[3] == "True"}
    return {
        "module": module,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "repeats": repeats,
        "loaded": loaded,
    }


def bench_learner(
    name: str, factory: Any, X: np.ndarray, y: np.ndarray, n_splits: int
) -> tuple[dict[str, Any], list[Any]]:
    """Run the repeated-split protocol and summarise fit times and accuracy."""
    from vqstack.fusion.evaluation import run_protocol
    from vqstack.fusion.protocols import repeated_splits

    start = time.perf_counter()
    results = []
    for split in repeated_splits(len(y), n_repeats=n_splits):
        results += run_protocol(factory, X, y, [split], learner=name)
        log.info("%s %s: fit %.2f s", name, split.name, results[-1].fit_seconds)
    total = time.perf_counter() - start
    fits = [r.fit_seconds for r in results]
    srocc = [r.metrics["srocc"] for r in results]
    plcc = [r.metrics["plcc_fitted"] for r in results]
    summary = {
        "learner": name,
        "splits": len(results),
        "total_s": total,
        "fit_median_s": statistics.median(fits),
        "fit_min_s": min(fits),
        "fit_max_s": max(fits),
        "predict_median_s": statistics.median(r.predict_seconds for r in results),
        "srocc_median": statistics.median(srocc),
        "plcc_fitted_median": statistics.median(plcc),
    }
    log.info("%s: %.1f s for %d splits (median fit %.2f s)", name, total, len(results), summary["fit_median_s"])
    return summary, results


def versions() -> dict[str, str]:
    """Versions of the libraries whose speed is measured."""
    import lightgbm
    import scipy
    import sklearn

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "lightgbm": lightgbm.__version__,
    }


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown tables."""
    cfg = report["config"]
    lines = [
        "# Fusion benchmark",
        "",
        f"{cfg['n_samples']} x {cfg['n_features']} synthetic features (seed {cfg['seed']}), "
        f"{cfg['n_splits']} repeated 80/20 splits, n_jobs={cfg['n_jobs']}, {report['machine']['cpus']} CPUs, "
        f"OMP_WAIT_POLICY {cfg['omp_wait_policy']}; " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        "",
        "| learner | settings | total s | fit median s | fit min-max s | predict median s | SROCC | PLCC (fit) "
        "| load avg before/after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["learners"]:
        lines.append(
            f"| {row['learner']} | {row['settings']} | {row['total_s']:.1f} | {row['fit_median_s']:.2f} | "
            f"{row['fit_min_s']:.2f}-{row['fit_max_s']:.2f} | {row['predict_median_s']:.3f} | "
            f"{row['srocc_median']:.3f} | {row['plcc_fitted_median']:.3f} | "
            f"{row['loadavg_1min'][0]:.1f} / {row['loadavg_1min'][1]:.1f} |"
        )
    lines += [
        "",
        f"| import | median s (of {cfg['import_repeats']}, fresh interpreter) | min-max s | torch | lightgbm "
        "| matplotlib |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["imports"]:
        loaded = row["loaded"]
        lines.append(
            f"| `{row['module']}` | {row['median_s']:.3f} | {row['min_s']:.3f}-{row['max_s']:.3f} | "
            f"{'yes' if loaded['torch'] else 'no'} | {'yes' if loaded['lightgbm'] else 'no'} | "
            f"{'yes' if loaded['matplotlib'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the benchmark, write JSON and markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_results"), help="output folder")
    parser.add_argument("--n-samples", type=int, default=1200)
    parser.add_argument("--n-features", type=int, default=5000)
    parser.add_argument("--n-splits", type=int, default=10)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--import-repeats", type=int, default=5)
    parser.add_argument("--learners", nargs="+", choices=["svr", "lightgbm"], default=["svr", "lightgbm"])
    parser.add_argument("--omp-wait-policy", choices=["default", "passive"], default="default")
    args = parser.parse_args(argv)
    if args.omp_wait_policy == "passive":
        if "lightgbm" in sys.modules:
            parser.error("--omp-wait-policy must take effect before lightgbm is imported")
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from vqstack.fusion.learners import LightGBMRegressor, SVRRegressor

    imports = [time_import(m, args.import_repeats) for m in ("vqstack.fusion", "vqstack.fusion.registry")]
    for row in imports:
        log.info("import %s: %.3f s, loaded %s", row["module"], row["median_s"], row["loaded"])

    X, y = synthetic(args.n_samples, args.n_features, args.seed)
    svr_grid = {"C_grid": (1.0, 10.0, 100.0), "gamma_grid": (0.5, 1.0, 2.0), "epsilon_grid": (0.1,), "cv": 3}
    candidates = {
        "svr": (
            lambda: SVRRegressor(**svr_grid, n_jobs=args.n_jobs, random_state=args.seed),
            "RBF, precomputed kernel; inner 3-fold search over C {1,10,100} x gamma {0.5,1,2}/d x eps {0.1} "
            "(9 x 3 fits + refit)",
        ),
        "lightgbm": (
            lambda: LightGBMRegressor(n_jobs=args.n_jobs, random_state=args.seed),
            "defaults: 400 trees, lr 0.03, 15 leaves, 63 bins, subsample/colsample 0.8, deterministic",
        ),
    }
    rows = []
    for name in args.learners:
        factory, settings = candidates[name]
        load_before = os.getloadavg()[0]
        summary, _ = bench_learner(name, factory, X, y, args.n_splits)
        rows.append({**summary, "settings": settings, "loadavg_1min": [load_before, os.getloadavg()[0]]})

    report = {
        "config": {
            "n_samples": args.n_samples,
            "n_features": args.n_features,
            "n_splits": args.n_splits,
            "n_jobs": args.n_jobs,
            "seed": args.seed,
            "import_repeats": args.import_repeats,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        },
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": versions(),
        "learners": rows,
        "imports": imports,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_fusion.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (args.out / "bench_fusion.md").write_text(markdown(report), encoding="utf-8")
    log.info("wrote %s and %s", args.out / "bench_fusion.json", args.out / "bench_fusion.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
