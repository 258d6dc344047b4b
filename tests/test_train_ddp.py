"""DDP through torchrun (gloo, 2 CPU processes) follows the 1-process run within float tolerance."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import head_recipe, make_synthetic_store

from vqstack.cli import main

pytest.importorskip("torch.distributed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _losses(path: Path) -> np.ndarray:
    with open(path, newline="") as fh:
        return np.asarray([float(r["loss"]) for r in csv.DictReader(fh)])


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch built without gloo")
def test_torchrun_two_processes_match_one(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    store, labels = make_synthetic_store(tmp_path, n=40)
    # no dropout: its masks are drawn per rank, so they legitimately differ from one process
    recipe = head_recipe(tmp_path, store, labels, **{"model": {"kind": "feature_head", "hidden": 16, "dropout": 0.0},
                                                    "protocol.n_repeats": 1})
    assert main(["train", "--config", str(recipe), "--device", "cpu", "--out", str(tmp_path / "one")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "vqstack.cli", "train", "--config", str(recipe), "--device", "cpu", "--out", str(tmp_path / "two")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = _losses(tmp_path / "one" / "split0" / "steps.csv"), _losses(tmp_path / "two" / "split0" / "steps.csv")
    assert one.shape == two.shape and one.size > 4
    np.testing.assert_allclose(two, one, rtol=1e-4, atol=1e-5)
    a = torch.load(tmp_path / "one" / "split0" / "best.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "two" / "split0" / "best.pt", weights_only=False)["state_dict"]
    # the output bias gets no gradient from shift-invariant losses (PLCC, rank) beyond rounding noise,
    # which Adam turns into arbitrary steps: it is not part of the comparison
    for key in (k for k in a if k != "fc_out.bias"):
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)
    # --resume under torchrun: the same recipe finds every split done; another seed is refused by every
    # rank (no rank left waiting for the others), naming the recipe file
    done = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    refused = subprocess.run([*cmd, "--resume", "--seed", "5"], env=env, capture_output=True, text=True, timeout=240)
    assert refused.returncode != 0 and f"{tmp_path / 'two' / 'recipe.yml'}: --resume" in refused.stderr
