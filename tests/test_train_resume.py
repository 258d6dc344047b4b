"""Exact resume: a run killed after an epoch and resumed logs the same losses as an uninterrupted run."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from train_helpers import head_recipe, make_synthetic_store

from vqstack.branches.protocol import run_recipe
from vqstack.branches.recipes import load_recipe


class Killed(Exception):
    pass


def _rows(path: Path, drop: tuple[str, ...] = ()) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(fh)]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_resume_after_kill_matches_uninterrupted_run(tmp_path: Path) -> None:
    store, labels = make_synthetic_store(tmp_path)
    recipe = load_recipe(head_recipe(tmp_path, store, labels))
    full = run_recipe(recipe, out=tmp_path / "full", device="cpu")

    def kill(split: str, epoch: int) -> None:
        if split == "split1" and epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        run_recipe(recipe, out=tmp_path / "killed", device="cpu", on_epoch_end=kill)
    assert (tmp_path / "killed" / "split0" / "result.json").is_file()
    assert not (tmp_path / "killed" / "split1" / "result.json").exists()
    # rows the interrupted epoch might have written after its checkpoint must not survive a resume
    with open(tmp_path / "killed" / "split1" / "steps.csv", "a") as fh:
        fh.write("2,999,123.0,0.1\n")
    resumed = run_recipe(recipe, out=tmp_path / "killed", device="cpu", resume=True)

    for split in ("split0", "split1"):
        a, b = tmp_path / "full" / split, tmp_path / "killed" / split
        assert _rows(a / "steps.csv") == _rows(b / "steps.csv")
        assert _rows(a / "epochs.csv", drop=("seconds",)) == _rows(b / "epochs.csv", drop=("seconds",))
        sa = torch.load(a / "best.pt", weights_only=False)["state_dict"]
        sb = torch.load(b / "best.pt", weights_only=False)["state_dict"]
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert full["test_srocc"] == resumed["test_srocc"]
    losses = [float(r["train_loss"]) for r in _rows(tmp_path / "full" / "split0" / "epochs.csv")]
    assert losses[-1] < losses[0]


def test_resume_finished_run_is_a_no_op(tmp_path: Path) -> None:
    store, labels = make_synthetic_store(tmp_path, n=32)
    recipe = load_recipe(head_recipe(tmp_path, store, labels), epochs=2)
    first = run_recipe(recipe, out=tmp_path / "run", device="cpu")
    again = run_recipe(recipe, out=tmp_path / "run", device="cpu", resume=True)
    assert first == again


def test_files_protocol_uses_the_given_train_val_test(tmp_path: Path) -> None:
    store, labels = make_synthetic_store(tmp_path, n=32)
    lines = labels.read_text().splitlines()
    for name, part in (("train", lines[1:21]), ("val", lines[21:26]), ("test", lines[26:])):
        (tmp_path / f"{name}.csv").write_text("\n".join([lines[0], *part]) + "\n")
    recipe = load_recipe(head_recipe(tmp_path, store, labels, protocol={
        "name": "files", "train_labels": str(tmp_path / "train.csv"), "val_labels": str(tmp_path / "val.csv"),
        "test_labels": str(tmp_path / "test.csv")}), epochs=2)
    summary = run_recipe(recipe, out=tmp_path / "run", device="cpu")
    assert summary["splits"] == 1
    import json

    record = json.loads((tmp_path / "run" / "files" / "result.json").read_text())
    assert (record["n_train"], record["n_val"], record["n_test"]) == (20, 5, 7)


def test_test_predictions_match_the_reported_srocc_and_resume_backfills_them(tmp_path: Path) -> None:
    from vqstack.metrics import srocc

    store, labels = make_synthetic_store(tmp_path, n=32)
    recipe = load_recipe(head_recipe(tmp_path, store, labels), epochs=2)
    summary = run_recipe(recipe, out=tmp_path / "run", device="cpu")
    rows = _rows(tmp_path / "run" / "predictions.csv")
    assert {r["split"] for r in rows} == {"split0", "split1"} and {r["learner"] for r in rows} == {recipe.name}
    for split in ("split0", "split1"):
        part = [r for r in rows if r["split"] == split]
        assert len(part) == 8  # test_size 0.25 of 32
        got = srocc([float(r["prediction"]) for r in part], [float(r["mos"]) for r in part])
        import json

        reported = json.loads((tmp_path / "run" / split / "result.json").read_text())["test_srocc"]
        assert got == pytest.approx(reported, abs=1e-6)
    # a run finished before trainers wrote predictions gets them from best.pt on --resume, identical
    before = (tmp_path / "run" / "split1" / "test_predictions.csv").read_text()
    (tmp_path / "run" / "split1" / "test_predictions.csv").unlink()
    (tmp_path / "run" / "predictions.csv").unlink()
    assert run_recipe(recipe, out=tmp_path / "run", device="cpu", resume=True) == summary
    assert (tmp_path / "run" / "split1" / "test_predictions.csv").read_text() == before
    assert _rows(tmp_path / "run" / "predictions.csv") == rows
