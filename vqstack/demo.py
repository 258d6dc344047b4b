"""The embedded demo: generated ladders -> frames -> nss features -> fusion -> ladder ranking.

Why it exists: a newcomer's first command must show the whole data flow working on this machine,
with numbers that can be checked (VMAF of every version, SROCC of the fusion, Spearman per
ladder), without data, weights or network. It is also the smoke test of the installed package.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from vqstack.ladders import build_ladders

DEMO_CLIP = 3.0
"""``preprocess.clip`` of the demo's fusion (standard deviations): one fixed, round value, not tuned per
held-out source (a limit of 4 gives the same picture)."""


def ladder_spearman(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Spearman between predicted score and damage order (pristine first) per (source, ladder)."""
    by_source: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        by_source.setdefault(str(row["source"]), []).append(row)
    out = []
    for source, items in sorted(by_source.items()):
        pristine = [r for r in items if r["ladder"] == "pristine"]
        for ladder in sorted({str(r["ladder"]) for r in items} - {"pristine"}):
            steps = pristine + sorted((r for r in items if r["ladder"] == ladder), key=lambda r: int(r["level"]))
            levels = [int(r["level"]) for r in steps]
            preds = [float(r["prediction"]) for r in steps]
            rho = float(spearmanr(preds, [-lv for lv in levels]).statistic)
            out.append({"source": source, "ladder": ladder, "spearman": rho,
                        "predictions": [round(p, 2) for p in preds]})
    return out


def run_demo(out: Path, *, workers: int = 2, seconds: float = 2.0) -> int:
    from vqstack.extract.frames import extract_frames
    from vqstack.extract.pipeline import ExtractorRequest, run_extract
    from vqstack.extract.probe import probe
    from vqstack.fusion.config import FeatureGroup, FusionConfig, LabelsConfig, LearnerConfig, ProtocolConfig
    from vqstack.fusion.preprocessing import PreprocessConfig
    from vqstack.fusion.run import fit_from_config

    t_start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    videos_dir = out / "videos"
    print(f"[1/6] building distortion ladders in {videos_dir} (x264 CRF, scale, blur, noise) + VMAF ...")
    t0 = time.perf_counter()
    ladder = build_ladders(videos_dir, seconds=seconds, workers=workers)
    n_sources = len({r.source for r in ladder})
    print(f"      {len(ladder)} videos from {n_sources} sources in {time.perf_counter() - t0:.1f} s")

    videos = [Path(r.path) for r in ladder]
    info = probe(videos[0])
    print(f"[2/6] probe: {info.width}x{info.height}, {info.fps:g} fps, {info.num_frames} frames, {info.codec}")

    t0 = time.perf_counter()
    pristine = [Path(r.path) for r in ladder if r.level == 0]
    report = extract_frames(pristine, out / "frames_2fps", videos_root=videos_dir, workers=workers, progress=False)
    print(f"[3/6] 2 fps frames of the {len(pristine)} pristine clips -> {out / 'frames_2fps'} "
          f"({report.summary()}, {time.perf_counter() - t0:.1f} s)")

    store = out / "store"
    first = run_extract(videos, [ExtractorRequest("nss")], store, workers=workers, progress=False)
    second = run_extract(videos, [ExtractorRequest("nss")], store, workers=workers, progress=False)
    print(f"[4/6] extract nss -> {store}: {first.report.summary()} ({first.cache_hits} from the cache) "
          f"in {first.seconds:.1f} s; "
          f"rerun: {second.cache_hits} cache hits in {second.seconds:.2f} s "
          f"({100 * second.seconds / max(first.seconds, 1e-9):.1f}% of the first run)")
    if first.report.failed:
        return 1

    from vqstack.features.store import table_name

    nss = ExtractorRequest("nss").build()
    nss_table = table_name(nss.name, nss.version, nss.config_dict(), nss.weights_sha256)
    labels = out / "labels.csv"
    with labels.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["video", "vmaf", "source"])
        for r in ladder:
            writer.writerow([Path(r.path).name, f"{r.vmaf:.3f}", r.source])
    cfg = FusionConfig(
        labels=LabelsConfig(path=labels, id_column="video", score_column="vmaf", group_column="source",
                            videos_root=videos_dir),
        # The table of the current nss version by name: an out folder kept from an older vqstack also
        # holds the older version's table, and the extractor name alone would be ambiguous.
        features=[FeatureGroup(extractor=nss_table, name="nss", pooling=["mean", "std"])],
        # Seven training sources cannot span every content: z-scores beyond 3 training standard deviations
        # (a held-out source's own content, not damage) are clipped so that they do not zero the RBF kernel.
        preprocess=PreprocessConfig(clip=DEMO_CLIP),
        learners=[LearnerConfig("svr"), LearnerConfig("lightgbm")],
        protocol=ProtocolConfig(name="grouped-kfold", params={"n_splits": n_sources}),
        store=store, output=out / "fusion",
    )
    t0 = time.perf_counter()
    outcome = fit_from_config(cfg)
    sv = outcome.summary["svr"]["srocc"]
    by_name = {Path(r.path).name: r for r in ladder}
    ids = [Path(r.path).name for r in ladder]
    per_held_out = {by_name[ids[res.test_idx[0]]].source: res.metrics["srocc"]
                    for res in outcome.results if res.learner == "svr"}
    print(f"[5/6] fuse fit (leave-one-source-out, target = VMAF): SVR SROCC median {sv['median']:.3f} "
          f"over {int(sv['n'])} held-out sources ({time.perf_counter() - t0:.1f} s) -> {out / 'fusion'}\n"
          f"      per held-out source (Spearman with VMAF; >= 0.9 in "
          f"{sum(v >= 0.9 for v in per_held_out.values())} of {len(per_held_out)}): "
          + ", ".join(f"{k} {v:.2f}" for k, v in sorted(per_held_out.items())))

    rows = []
    for res in outcome.results:
        if res.learner != "svr":
            continue
        for i, pred in zip(res.test_idx, res.predictions, strict=True):
            r = by_name[ids[i]]
            rows.append({"source": r.source, "ladder": r.ladder, "level": r.level, "prediction": pred})
    table = ladder_spearman(rows)
    lines = ["| held-out source | ladder | Spearman with damage order | predictions (pristine first) |",
             "|---|---|---|---|"]
    lines += [f"| {t['source']} | {t['ladder']} | {t['spearman']:.2f} | {t['predictions']} |" for t in table]
    rhos = np.array([t["spearman"] for t in table], dtype=float)
    per_source = {s: float(np.mean([t["spearman"] for t in table if t["source"] == s]))
                  for s in {t["source"] for t in table}}
    summary = (f"ladders ranked in order (Spearman >= 0.9): {int((rhos >= 0.9).sum())} of {len(rhos)}; "
               f"mean per-ladder Spearman {rhos.mean():.3f}; per source: "
               + ", ".join(f"{s} {v:.2f}" for s, v in sorted(per_source.items())))
    (out / "ladder_ranking.md").write_text("# Demo: ladder ranking by held-out sources\n\n" + "\n".join(lines)
                                           + "\n\n" + summary + "\n")
    print("[6/6] " + summary)
    print("\n".join(lines))
    print(f"demo finished in {time.perf_counter() - t_start:.1f} s; everything is in {out}")
    return 0
