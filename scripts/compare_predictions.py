"""Compare predictors split by split from their ``predictions.csv`` files, and their z-scored average.

Both ``vqstack fuse fit`` and ``vqstack train`` write ``predictions.csv`` (``id, mos, prediction, split,
learner``: every split's test predictions) and use the same seeded 80/20 splits, so a fine-tuned branch
and an SVR on frozen features can be compared on the same test photos of each split. A median over 10
splits of 60 photos moves by about 0.01 with the luck of a single split; the per-split differences say
more than the two medians.

The ``z-average`` column averages the predictors after z-scoring each one's predictions within the split's
test set (no labels used: a monotone map per predictor, then equal weights): the simplest late fusion of
a branch with the rest, without fitting anything on the test photos. ``--ensemble NAME=A,B,...`` adds a
column that z-averages only the named predictors, e.g. several seeds of one recipe (a seed ensemble),
so it can be compared with the first predictor on its own.

Usage::

    python scripts/compare_predictions.py runs/clive_frame_iqa_svr/predictions.csv:svr \\
        runs/frame_iqa_clive_damage_wild/predictions.csv --out runs/compare_wild
    # writes OUT/compare.csv and OUT/compare.md (SROCC per split, median, mean; differences to the first)
    python scripts/compare_predictions.py SVR/predictions.csv:svr RUN42/predictions.csv \
        RUN43/predictions.csv --ensemble seeds=frame_iqa_a,frame_iqa_b --out runs/compare_seeds
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from vqstack.metrics import srocc


def read_predictions(spec: str) -> tuple[str, dict[str, dict[str, tuple[float, float]]]]:
    """``PATH[:LEARNER]`` -> (label, {split: {id: (mos, prediction)}}); a file with several learners
    needs the learner named."""
    path, sep, learner = spec.rpartition(":")
    if not sep or not Path(path).is_file():  # no learner named (or a colon inside the path)
        path, learner = spec, ""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    missing = {"id", "mos", "prediction", "split"} - set(rows[0] if rows else {})
    if missing:
        raise SystemExit(f"{path}: not a predictions.csv (missing columns {sorted(missing)})")
    learners = sorted({r.get("learner", "") for r in rows})
    if not learner:
        if len(learners) > 1:
            raise SystemExit(f"{path}: holds learners {learners}; name one as {path}:LEARNER")
        learner = learners[0]
    by_split: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
    for r in rows:
        if r.get("learner", "") == learner:
            by_split[r["split"]][r["id"]] = (float(r["mos"]), float(r["prediction"]))
    if not by_split:
        raise SystemExit(f"{path}: no rows for learner {learner!r} (it has {learners})")
    return learner or Path(path).parent.name, dict(by_split)


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() or 1.0)


Predictors = list[tuple[str, dict[str, dict[str, tuple[float, float]]]]]


def parse_ensembles(specs: list[str], labels: list[str]) -> dict[str, list[str]]:
    """``NAME=A,B,...`` -> {NAME: [A, B, ...]}; every member must be a predictor's label."""
    out: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, members = spec.partition("=")
        name = name.strip()
        names = [m.strip() for m in members.split(",") if m.strip()]
        if not sep or not name or len(names) < 2:
            raise SystemExit(f"--ensemble {spec!r}: expected NAME=LABEL,LABEL[,...] (two members at least)")
        unknown = [m for m in names if m not in labels]
        if unknown:
            raise SystemExit(f"--ensemble {spec!r}: {unknown} not among the predictors' labels {labels}")
        if name in labels or name in out or name == "z-average":
            raise SystemExit(f"--ensemble {spec!r}: the name {name!r} is already a column")
        out[name] = names
    return out


def compare(predictors: Predictors, ensembles: dict[str, list[str]] | None = None) -> list[dict[str, object]]:
    """One row per split present in every predictor: SROCC of each, of each named ensemble's z-scored
    average, and of the z-scored average of all."""
    common = set.intersection(*(set(p) for _, p in predictors))
    rows = []
    for split in sorted(common, key=lambda s: (len(s), s)):
        ids = sorted(set.intersection(*(set(p[split]) for _, p in predictors)))
        mos = np.array([predictors[0][1][split][i][0] for i in ids])
        preds = [np.array([p[split][i][1] for i in ids]) for _, p in predictors]
        row: dict[str, object] = {"split": split, "n": len(ids)}
        row.update({label: srocc(pred, mos) for (label, _), pred in zip(predictors, preds, strict=True)})
        by_label = {label: _zscore(pred) for (label, _), pred in zip(predictors, preds, strict=True)}
        for name, members in (ensembles or {}).items():
            row[name] = srocc(np.mean([by_label[m] for m in members], axis=0), mos)
        row["z-average"] = srocc(np.mean(list(by_label.values()), axis=0), mos)
        rows.append(row)
    if not rows:
        raise SystemExit("the prediction files share no split")
    return rows


def summary_rows(rows: list[dict[str, object]], labels: list[str]) -> list[dict[str, object]]:
    """Median and mean of every column, then each column's per-split differences to the first."""
    cols = [*labels, "z-average"]
    out = []
    for name, fn in (("median", np.median), ("mean", np.mean)):
        out.append({"split": name, "n": "", **{c: float(fn([r[c] for r in rows])) for c in cols}})
    base = labels[0]
    for c in cols[1:]:
        diff = np.array([float(r[c]) - float(r[base]) for r in rows])  # type: ignore[arg-type]
        out.append({"split": f"{c} - {base}", "n": "",
                    **{c: f"median {np.median(diff):+.3f}, mean {diff.mean():+.3f}, "
                          f"wins {(diff > 0).sum()}/{len(diff)}"}})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("predictions", nargs="+", help="PATH[:LEARNER] of predictions.csv files; the first is the base")
    ap.add_argument("--out", type=Path, required=True, help="folder for compare.csv and compare.md")
    ap.add_argument("--ensemble", action="append", default=[], metavar="NAME=A,B,...",
                    help="add a column z-averaging only these predictors (their labels); repeatable")
    args = ap.parse_args(argv)
    predictors = [read_predictions(s) for s in args.predictions]
    labels = [label for label, _ in predictors]
    if len(set(labels)) != len(labels):
        raise SystemExit(f"predictor labels repeat ({labels}); compare different learners")
    ensembles = parse_ensembles(args.ensemble, labels)
    rows = compare(predictors, ensembles)
    cols = ["split", "n", *labels, *ensembles, "z-average"]
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "compare.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)

    def cell(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    table = rows + summary_rows(rows, [*labels, *ensembles])
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |" for r in table]
    (args.out / "compare.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
