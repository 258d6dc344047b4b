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


def test_resume_refuses_a_changed_recipe_but_not_a_runtime_setting(tmp_path: Path) -> None:
    from vqstack.errors import ConfigError

    store, labels = make_synthetic_store(tmp_path, n=32)
    path = head_recipe(tmp_path, store, labels)
    recipe = load_recipe(path, epochs=2)
    first = run_recipe(recipe, out=tmp_path / "run", device="cpu")
    for changed, keys in ((load_recipe(path, epochs=2, seed=7), "name, seed"),
                          (load_recipe(path, epochs=3), "optim.epochs")):
        with pytest.raises(ConfigError, match=rf"recipe\.yml: --resume .*\({keys}\)"):
            run_recipe(changed, out=tmp_path / "run", device="cpu", resume=True)
    # a seed given on the command line runs the same test splits as another member of an ensemble
    other = run_recipe(load_recipe(path, epochs=2, seed=7), out=tmp_path / "seed7", device="cpu")
    def test_ids(out: str) -> dict[str, set[str]]:
        rows = _rows(tmp_path / out / "predictions.csv")
        return {split: {r["id"] for r in rows if r["split"] == split} for split in ("split0", "split1")}

    assert test_ids("run") == test_ids("seed7") and test_ids("run")["split0"] != test_ids("run")["split1"]
    # another branch, under its own name; the recipe's own seed keeps the recipe's name
    assert {r["learner"] for r in _rows(tmp_path / "seed7" / "predictions.csv")} == {f"{recipe.name}_seed7"}
    assert load_recipe(path, seed=recipe.seed).name == recipe.name
    assert other["test_srocc"] != first["test_srocc"]  # another draw, not a copy
    from dataclasses import replace

    runtime = replace(recipe, data=replace(recipe.data, num_workers=1), output=tmp_path / "elsewhere")
    assert run_recipe(runtime, out=tmp_path / "run", device="cpu", resume=True) == first


def test_cli_seed_and_out_make_another_ensemble_member(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from vqstack.cli import main

    store, labels = make_synthetic_store(tmp_path, n=32)
    path = head_recipe(tmp_path, store, labels)
    out = tmp_path / "seed9"
    assert main(["train", "--config", str(path), "--device", "cpu", "--epochs", "1", "--seed", "9",
                 "--out", str(out)]) == 0
    ran = yaml.safe_load((out / "recipe.yml").read_text())
    assert (ran["seed"], ran["name"], ran["output"]) == (9, "synthetic_head_seed9", str(out))
    capsys.readouterr()
    code = main(["train", "--config", str(path), "--device", "cpu", "--epochs", "1", "--out", str(out), "--resume"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and str(out / "recipe.yml") in err[0] and "(name, seed)" in err[0]
