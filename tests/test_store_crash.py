"""THE KILL TEST: SIGKILL a writer at random moments; the store must stay readable and complete.

After every kill: a fresh reader opens the store; every video the writer reported ``done`` is there
and equal to what was written; nothing unknown appeared; the next writer skips exactly what is stored
and redoes only the rest. The fake writer (``tests/fake_store_writer.py``) compacts every few videos
so kills also land inside compaction.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fake_store_writer import fake_features, fake_key, fake_table

from vqstack.features import FeatureStore

REPO = Path(__file__).resolve().parents[1]
WRITER = Path(__file__).with_name("fake_store_writer.py")
N_VIDEOS = 60
N_KILLS = 6


class Child:
    """The writer subprocess with its protocol lines collected by a thread."""

    def __init__(self, root: Path, compact_every: int) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(root), "--n", str(N_VIDEOS), "--compact-every", str(compact_every)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
        )
        self.lines: list[str] = []
        self.started = threading.Event()
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.strip())
                self._changed.notify_all()
            if line.strip() == "start":
                self.started.set()
        self.started.set()
        with self._changed:
            self.lines.append("<eof>")
            self._changed.notify_all()

    def wait_for(self, word: str, count: int, timeout: float = 30) -> None:
        """Block until the child printed ``count`` lines starting with ``word`` (or exited)."""
        with self._changed:
            self._changed.wait_for(
                lambda: "<eof>" in self.lines or sum(x.startswith(word) for x in self.lines) >= count,
                timeout=timeout,
            )

    def finish(self, *, kill: bool, timeout: float = 60) -> None:
        if kill:
            self.proc.send_signal(signal.SIGKILL)
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=10)

    def keys(self, word: str) -> set[str]:
        return {line.split()[1] for line in self.lines if line.startswith(word + " ")}

    @property
    def last(self) -> str:
        return next((x for x in reversed(self.lines) if x != "<eof>"), "")


def check_store(root: Path, reported_done: set[str], all_keys: set[str]) -> set[str]:
    """Open the store fresh and check what a kill must never break; returns the stored keys."""
    store = FeatureStore(root)
    table = fake_table(store)
    stored = table.keys()
    assert stored <= all_keys, "a key nobody attempted appeared"
    assert reported_done <= stored, f"completed videos lost: {sorted(reported_done - stored)}"
    index = {fake_key(i): i for i in range(N_VIDEOS)}
    for key in stored:
        got, want = table.read(key), fake_features(index[key])
        np.testing.assert_array_equal(got.steps, want.steps)
        np.testing.assert_array_equal(got.timestamps, want.timestamps)
        np.testing.assert_array_equal(got.pooled["mean"], want.pooled["mean"])
        assert got.video == want.video
    assert all(t.error is None for t in store.tables())
    if stored:
        ids = [f"{index[k]}.mp4" for k in sorted(stored)]
        X, _ = store.read_matrix(ids, "fake", ["mean", "std"])
        assert X.shape == (len(ids), 1024)
    return stored


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sigkill_at_random_moments_loses_nothing_completed(tmp_path: Path) -> None:
    root = tmp_path / "store"
    rng = random.Random(20240611)
    all_keys = {fake_key(i) for i in range(N_VIDEOS)}
    stored: set[str] = set()
    kills_in_compaction = 0
    t0 = time.monotonic()
    for round_ in range(N_KILLS):
        compact_every = rng.choice([1, 2, 3])
        child = Child(root, compact_every=compact_every)
        assert child.started.wait(30), f"writer did not start: {child.proc.stderr}"
        # kill at a random point of progress (machine-speed independent), a few ms after a random
        # video write or compaction began, so kills land inside writes, renames and compactions
        remaining = N_VIDEOS - len(stored)
        n_writes = rng.randint(1, max(1, min(remaining - 1, 8)))
        word = rng.choice(["begin", "compact-begin"]) if n_writes >= compact_every else "begin"
        child.wait_for(word, n_writes if word == "begin" else max(1, n_writes // compact_every))
        time.sleep(rng.uniform(0.0, 0.01))
        child.finish(kill=True)
        assert child.last != "finished", "the writer finished before being killed; raise N_VIDEOS"
        assert child.keys("skip") == stored, f"round {round_}: resumed writer did not skip exactly the stored keys"
        assert not (child.keys("done") & stored), f"round {round_}: a stored video was redone"
        kills_in_compaction += child.last == "compact-begin"
        stored = check_store(root, child.keys("done"), all_keys)
    # a last writer, not killed, completes the rest and compacts while this process keeps reading:
    # a reader without any lock never sees a video disappear nor a damaged one
    child = Child(root, compact_every=3)
    table = fake_table(FeatureStore(root))
    seen: set[str] = set()
    index = {fake_key(i): i for i in range(N_VIDEOS)}
    n_reads = 0
    while child.proc.poll() is None:
        keys = table.keys()
        assert seen <= keys, f"videos vanished while compacting: {sorted(seen - keys)}"
        seen = keys
        for key in rng.sample(sorted(keys), min(3, len(keys))):
            assert table.read(key).steps.shape == fake_features(index[key]).steps.shape
            n_reads += 1
    child.finish(kill=False)
    assert child.proc.returncode == 0, child.proc.stderr.read() if child.proc.stderr else ""
    assert child.last == "finished"
    assert child.keys("skip") == stored and child.keys("done") == all_keys - stored
    assert check_store(root, all_keys, all_keys) == all_keys
    assert table.shard_keys() == []
    assert not list(root.rglob("*.tmp")), "stray temporary files were not cleaned"
    print(
        f"{N_KILLS} kills ({kills_in_compaction} during compaction), {n_reads} concurrent reads, "
        f"{time.monotonic() - t0:.1f} s"
    )
