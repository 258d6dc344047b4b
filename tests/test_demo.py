"""``vqstack demo``: the embedded end-to-end run works on short generated clips and writes its results."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from vqstack.cli import main


@pytest.mark.timeout(600)
def test_demo_runs_end_to_end_and_reuses_its_cache(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--seconds", "0.6", "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "[6/6] ladders ranked in order" in printed and "per held-out source" in printed
    assert "(0 from the cache)" in printed
    with (out / "labels.csv").open() as fh:
        labels = list(csv.DictReader(fh))
    sources = {r["source"] for r in labels}
    assert len(labels) == 17 * len(sources)  # pristine + 4 ladders x 4 levels per source
    assert all(0.0 <= float(r["vmaf"]) <= 100.0 for r in labels)
    metrics = json.loads((out / "fusion" / "metrics.json").read_text())
    assert "svr" in json.dumps(metrics)
    table = (out / "ladder_ranking.md").read_text()
    assert table.count("\n| ") == 4 * len(sources) + 1  # header + one row per (source, ladder)
    assert (out / "fusion" / "model.joblib").is_file() and any((out / "frames_2fps").rglob("*.png"))
    # a second run finds everything in place: the extraction is all cache hits
    assert main(["demo", "--out", str(out), "--seconds", "0.6", "--workers", "2"]) == 0
    assert f"({17 * len(sources)} from the cache)" in capsys.readouterr().out
