"""Write the outputs of a fusion run: metrics JSON, markdown report, predictions CSV, scatter plots.

Why plain inputs: the functions take the list of :class:`~vqstack.fusion.evaluation.SplitResult`
(numpy arrays and dicts), not a store or a config, so they work the same for a CLI run, a benchmark
and a test. Files are written to a temporary name and renamed, so an interrupted run never leaves a
half-written report that looks complete. Matplotlib is imported only when a plot is drawn, and through
its object API with the Agg canvas, so the caller's pyplot backend is never changed.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from vqstack.fusion.evaluation import SplitResult, summarize
from vqstack.metrics import fit_logistic_4

__all__ = [
    "markdown_report",
    "plot_scatter",
    "results_to_json",
    "write_markdown_report",
    "write_metrics_json",
    "write_predictions_csv",
    "write_report",
    "write_scatter_plots",
]

METRIC_COLUMNS: dict[str, str] = {
    "srocc": "SROCC",
    "krocc": "KROCC",
    "plcc": "PLCC",
    "plcc_fitted": "PLCC (fit)",
    "rmse_fitted": "RMSE (fit)",
    "rank_acc": "pair acc",
    "acc_source": "acc src",
    "acc_nonsource": "acc non-src",
    "kvq_score": "KVQ",
}
"""Metric keys shown in the markdown tables, in order, with their headings."""


def _atomic_write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _jsonable(value: Any) -> Any:
    """Plain JSON data: NaN/inf become null (JSON has no NaN), numpy scalars and arrays become python."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _by_learner(results: Sequence[SplitResult]) -> dict[str, list[SplitResult]]:
    out: dict[str, list[SplitResult]] = {}
    for result in results:
        out.setdefault(result.learner, []).append(result)
    return out


def results_to_json(
    results: Sequence[SplitResult],
    *,
    ids: Sequence[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON document :func:`write_metrics_json` writes: summary per learner plus every split."""
    return _jsonable(
        {
            **(dict(extra) if extra else {}),
            "summary": summarize(results),
            "splits": [r.to_dict(ids) for r in results],
        }
    )


def write_metrics_json(
    results: Sequence[SplitResult],
    path: str | Path,
    *,
    ids: Sequence[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write :func:`results_to_json` (``extra`` is merged at the top level, e.g. the config)."""
    text = json.dumps(results_to_json(results, ids=ids, extra=extra), indent=2, allow_nan=False)
    return _atomic_write(Path(path), (text + "\n").encode("utf-8"))


def _fmt(value: float, digits: int = 4) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _columns(items: Sequence[SplitResult]) -> list[str]:
    present = {k for r in items for k in r.metrics}
    return [k for k in METRIC_COLUMNS if k in present]


def markdown_report(results: Sequence[SplitResult], *, title: str = "Fusion results", notes: Sequence[str] = ()) -> str:
    """A markdown report: one overview row per learner, then a table per learner.

    Each learner's table has a row per split, then median, IQR (q3 - q1), min and max rows over the
    splits (undefined values are skipped and shown as n/a).
    """
    groups = _by_learner(results)
    summary = summarize(results)
    lines = [f"# {title}", ""]
    lines.extend(notes)
    if notes:
        lines.append("")
    lines += [
        "## Overview (median over splits)",
        "",
        "| learner | splits | SROCC | PLCC (fit) | RMSE (fit) | fit s |",
    ]
    lines.append("|---|---|---|---|---|---|")
    for name, items in groups.items():
        s = summary[name]

        def med(key: str, s: dict[str, dict[str, float]] = s) -> str:
            return _fmt(s[key]["median"]) if key in s else "n/a"

        lines.append(
            f"| {name} | {len(items)} | {med('srocc')} | {med('plcc_fitted')} | {med('rmse_fitted')} "
            f"| {_fmt(s['fit_seconds']['median'], 2)} |"
        )
    for name, items in groups.items():
        cols = _columns(items)
        head = ["split", "n test", *(METRIC_COLUMNS[c] for c in cols), "fit s"]
        lines += ["", f"## {name}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in items:
            cells = [r.split, str(r.test_idx.size), *(_fmt(r.metrics.get(c, math.nan)) for c in cols)]
            lines.append("| " + " | ".join([*cells, _fmt(r.fit_seconds, 2)]) + " |")
        s = summary[name]
        for stat, label in (("median", "**median**"), ("iqr", "IQR"), ("min", "min"), ("max", "max")):
            cells = [label, "", *(_fmt(s[c][stat]) for c in cols), _fmt(s["fit_seconds"][stat], 2)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_markdown_report(
    results: Sequence[SplitResult],
    path: str | Path,
    *,
    title: str = "Fusion results",
    notes: Sequence[str] = (),
) -> Path:
    """Write :func:`markdown_report` to ``path``."""
    return _atomic_write(Path(path), markdown_report(results, title=title, notes=notes).encode("utf-8"))


def write_predictions_csv(results: Sequence[SplitResult], path: str | Path, *, ids: Sequence[str]) -> Path:
    """One row per test prediction: ``id, mos, prediction, split, learner`` (``ids`` indexes the rows)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "mos", "prediction", "split", "learner"])
    for r in results:
        for i, mos, pred in zip(r.test_idx, r.mos, r.predictions, strict=True):
            writer.writerow([ids[int(i)], repr(float(mos)), repr(float(pred)), r.split, r.learner])
    return _atomic_write(Path(path), buffer.getvalue().encode("utf-8"))


def plot_scatter(
    pred: ArrayLike,
    mos: ArrayLike,
    path: str | Path,
    *,
    title: str,
    xlabel: str = "prediction",
    ylabel: str = "MOS",
) -> Path:
    """Scatter of predictions against MOS with the fitted 4-parameter logistic curve, as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    p = np.asarray(pred, dtype=np.float64)
    m = np.asarray(mos, dtype=np.float64)
    fig = Figure(figsize=(5.0, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(p, m, s=10, alpha=0.6, edgecolors="none")
    if p.size >= 2 and np.ptp(p) > 0:
        fit = fit_logistic_4(p, m)
        grid = np.linspace(p.min(), p.max(), 200)
        ax.plot(grid, fit(grid), color="tab:red", linewidth=1.5, label=f"{fit.kind} fit")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return _atomic_write(Path(path), buffer.getvalue())


def write_scatter_plots(results: Sequence[SplitResult], out_dir: str | Path) -> dict[str, Path]:
    """One PNG per learner, ``scatter_<learner>.png``, pooling the test predictions of all splits.

    The title gives the median SROCC and fitted PLCC over splits (the curve is fitted on the pooled
    points; with repeated splits a video appears once per split that tested it).
    """
    summary = summarize(results)
    paths: dict[str, Path] = {}
    for name, items in _by_learner(results).items():
        pred = np.concatenate([r.predictions for r in items])
        mos = np.concatenate([r.mos for r in items])
        s = summary[name]
        srocc = s.get("srocc", {}).get("median", math.nan)
        plcc = s.get("plcc_fitted", {}).get("median", math.nan)
        title = f"{name}: SROCC {_fmt(srocc, 3)} / PLCC {_fmt(plcc, 3)} (median of {len(items)} split(s))"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        paths[name] = plot_scatter(pred, mos, Path(out_dir) / f"scatter_{safe}.png", title=title)
    return paths


def write_report(
    results: Sequence[SplitResult],
    out_dir: str | Path,
    *,
    ids: Sequence[str],
    title: str = "Fusion results",
    extra: Mapping[str, Any] | None = None,
    plots: bool = True,
) -> dict[str, Path]:
    """Write ``metrics.json``, ``report.md``, ``predictions.csv`` and the scatter plots into ``out_dir``."""
    out = Path(out_dir)
    written = {
        "metrics": write_metrics_json(results, out / "metrics.json", ids=ids, extra=extra),
        "report": write_markdown_report(results, out / "report.md", title=title),
        "predictions": write_predictions_csv(results, out / "predictions.csv", ids=ids),
    }
    if plots:
        for name, path in write_scatter_plots(results, out).items():
            written[f"scatter:{name}"] = path
    return written
