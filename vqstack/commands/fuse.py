"""``vqstack fuse``: learn a late fusion over stored features, evaluate it, and score new videos.

  fit       evaluate the config's learners under its protocol, write metrics/report/plots, save a model
  predict   score videos with a saved model (features it needs are extracted on the way, via the cache)
  eval      score a labelled set with a saved model and report the metrics
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    from vqstack.commands.extract import add_extractor_options

    p = sub.add_parser("fuse", help="fit / evaluate / apply a fusion model over stored features",
                       description=__doc__, formatter_class=formatter)
    fsub = p.add_subparsers(dest="fuse_command", metavar="ACTION", required=True)
    q = fsub.add_parser("fit", help="fit and evaluate from a fusion.yml", formatter_class=formatter,
                        description="Fit every learner of the config under its protocol; save reports and a model.")
    q.add_argument("--config", required=True, type=Path, help="fusion YAML (see configs/fusion/)")
    q.add_argument("--out", type=Path, default=None, help="output folder (default: the config's output)")
    q.add_argument("--store", type=Path, default=None, help="feature store (default: the config's store)")
    q.add_argument("--no-plots", action="store_true", help="skip the scatter PNGs")
    q.set_defaults(handler=run_fit)

    for name, helptext in (("predict", "score videos with a saved model into a CSV"),
                           ("eval", "score a labelled set with a saved model and print its metrics")):
        q = fsub.add_parser(name, help=helptext, description=helptext, formatter_class=formatter)
        q.add_argument("--model", required=True, type=Path, help="model bundle written by 'fuse fit' (model.joblib)")
        q.add_argument("--store", type=Path, default=Path("features"), help="feature store folder")
        q.add_argument("--out", type=Path, required=True, help="CSV of scores (eval: also writes a .json beside)")
        q.add_argument("--no-extract", action="store_true",
                       help="fail on missing features instead of extracting them")
        q.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        if name == "predict":
            q.add_argument("--videos", required=True, help="a folder (recursive), a list file, or one video/image")
        else:
            q.add_argument("--labels", required=True, type=Path, help="labels file (any format fuse fit reads)")
            q.add_argument("--videos-root", required=True, type=Path, help="folder the labels' ids are relative to")
            q.add_argument("--id-column", default=None, help="id column of a CSV with a header")
            q.add_argument("--score-column", default=None, help="score column of a CSV with a header")
        add_extractor_options(q)
        q.set_defaults(handler=run_predict if name == "predict" else run_eval)


def run_fit(args: argparse.Namespace) -> int:
    import dataclasses

    from vqstack.fusion.config import load_fusion_config
    from vqstack.fusion.run import fit_from_config

    cfg = load_fusion_config(args.config)
    if args.store is not None:
        cfg = dataclasses.replace(cfg, store=args.store)
    outcome = fit_from_config(cfg, output=args.out, plots=not args.no_plots)
    print(f"fuse fit: {outcome.n_samples} samples x {outcome.n_features} features, protocol {cfg.protocol.name}")
    print(_summary_table(outcome.summary))
    print(f"model: {outcome.bundle_path}; report: {outcome.written['report']}")
    return 0


def _summary_table(summary: dict[str, Any]) -> str:
    rows = ["| learner | SROCC median [IQR] | PLCC (fitted) median | KROCC median | RMSE median | splits |",
            "|---|---|---|---|---|---|"]
    for learner, stats in summary.items():
        def cell(metric: str, stats: dict[str, Any] = stats) -> str:
            s = stats.get(metric)
            return f"{s['median']:.4f}" if s else "-"
        sr = stats.get("srocc", {})
        iqr = f" [{sr['q1']:.3f}, {sr['q3']:.3f}]" if sr else ""
        rows.append(f"| {learner} | {cell('srocc')}{iqr} | {cell('plcc_fitted')} | {cell('krocc')} | "
                    f"{cell('rmse_fitted')} | {int(sr.get('n', 0))} |")
    return "\n".join(rows)


def _score(args: argparse.Namespace, videos: list[Path], videos_root: Path | None) -> tuple[Any, list[str], Any]:
    """Features for ``videos`` (extracting what the store lacks) -> predictions; failures recorded."""
    import json

    import numpy as np

    from vqstack.batch import BatchReport
    from vqstack.commands.extract import build_requests
    from vqstack.errors import ConfigError, MissingFeaturesError
    from vqstack.extract.pipeline import run_extract
    from vqstack.features.store import FeatureStore
    from vqstack.fusion.run import bundle_matrix, bundle_specs, load_bundle, predict

    bundle = load_bundle(args.model)
    specs = bundle_specs(bundle)
    report = BatchReport()
    ok = list(videos)
    if not args.no_extract:
        args.opt = [f"{s.extractor}.{k}={json.dumps(v)}" for s in specs for k, v in s.config.items()] + list(args.opt)
        requests = build_requests(args, list(dict.fromkeys(s.extractor for s in specs)))
        for req, spec in zip(requests, specs, strict=False):
            built = req.build()
            from vqstack.features.store import table_name

            name = table_name(built.name, built.version, built.config_dict(), built.weights_sha256)
            if name != spec.table:
                raise ConfigError(
                    f"{args.model}: the model was fit on {spec.table} ({spec.extractor} version {spec.version}); "
                    f"this vqstack's {built.name} (version {built.version}) with the given weights writes {name}"
                )
        result = run_extract(ok, requests, args.store, progress=not args.no_progress, workers=args.workers,
                             backend=args.backend, engine=args.engine, address=args.address)
        report = result.report
        failed = {f.path for f in report.failed}
        ok = [v for v in ok if str(v) not in failed]
    store = FeatureStore(args.store)
    ids = [str(v) for v in ok]
    try:
        X = bundle_matrix(store, bundle, ids)
    except MissingFeaturesError as exc:
        for m in exc.missing:
            report.fail(m, "features missing in the store (run without --no-extract)")
        missing = set(exc.missing)
        ids = [i for i in ids if i not in missing]
        X = bundle_matrix(store, bundle, ids) if ids else np.zeros((0, 1))
    preds = predict(bundle, X) if ids else np.zeros(0)
    return report, ids, preds


def _check_engine(args: argparse.Namespace) -> None:
    """``--engine``/``--address`` checked first: a missing Ray is one line, before any model is loaded."""
    from vqstack.extract.ray_engine import check_engine

    check_engine(args.engine, args.address)


def run_predict(args: argparse.Namespace) -> int:
    import csv

    from vqstack.errors import InputError
    from vqstack.extract.media import discover

    _check_engine(args)
    try:
        videos = discover(args.videos)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    source = Path(args.videos)
    report, ids, preds = _score(args, videos, source if source.is_dir() else None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["video", "score"])
        for vid, score in zip(ids, preds, strict=True):
            writer.writerow([vid, f"{score:.6f}"])
    failures = report.write_failures(args.out.with_suffix(".failures.csv"))
    print(f"fuse predict: {len(ids)} scored -> {args.out}" + (f"; {len(report.failed)} failed ({failures})"
                                                                 if failures else ""))
    return report.exit_code


def run_eval(args: argparse.Namespace) -> int:
    import csv
    import json

    import numpy as np

    from vqstack.fusion.labels import read_labels
    from vqstack.metrics import evaluate

    _check_engine(args)
    labels = read_labels(args.labels, id_column=args.id_column, score_column=args.score_column)
    videos = [args.videos_root / i for i in labels.ids]
    report, ids, preds = _score(args, videos, args.videos_root)
    by_path = {str(args.videos_root / i): k for k, i in enumerate(labels.ids)}
    mos = np.asarray([labels.mos[by_path[i]] for i in ids])
    metrics = evaluate(preds, mos)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["video", "mos", "score"])
        for vid, m, p in zip(ids, mos, preds, strict=True):
            writer.writerow([vid, m, f"{p:.6f}"])
    args.out.with_suffix(".json").write_text(json.dumps(metrics, indent=1))
    print("fuse eval: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float)))
    return report.exit_code
