"""A stand-in for ``vqstack extract`` that only exercises the store, for kill tests.

Run as ``python tests/fake_store_writer.py ROOT --n 40 --compact-every 5``. It takes the writer
lock, then for video ``i`` in ``range(n)`` writes deterministic fake features (a realistically sized
``[T, D]`` float32 array) unless the key is already stored, printing a protocol line, flushed,
around each step so that a test killing it knows what was completed:

    start                  lock taken
    skip <key>             already stored, not redone
    begin <key>            writing
    done <key>             ``table.write`` returned (the video must survive any kill from now on)
    compact-begin / compact-end
    finished               all written and compacted

Tests import :func:`fake_key` and :func:`fake_features` to check what they read back.
"""

from __future__ import annotations

import argparse
import hashlib
import sys

import numpy as np

from vqstack.features import FeatureStore, Table, VideoFeatures

EXTRACTOR, VERSION = "fake", "1"


def fake_key(i: int) -> str:
    """A content-key-shaped key for fake video ``i``."""
    return "f" + hashlib.blake2b(f"fake-video-{i}".encode(), digest_size=20).hexdigest()


def fake_features(i: int, d: int = 512) -> VideoFeatures:
    """Deterministic features of fake video ``i`` (T varies per video, like real clips)."""
    rng = np.random.default_rng(i)
    t = 40 + (i * 37) % 120
    steps = rng.standard_normal((t, d)).astype(np.float32)
    return VideoFeatures(
        steps=steps,
        timestamps=np.arange(t) / 30.0,
        pooled={"mean": steps.mean(0), "std": steps.std(0)},
        video={"path": f"/fake/videos/{i}.mp4", "fps": 30.0, "width": 1280, "height": 720,
               "duration": t / 30.0, "num_frames": t},
    )


def fake_table(store: FeatureStore, d: int = 512) -> Table:
    return store.table(EXTRACTOR, VERSION, {"d": d}, None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("root")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--compact-every", type=int, default=0)
    ap.add_argument("--d", type=int, default=512)
    args = ap.parse_args(argv)

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    store = FeatureStore(args.root)
    with store.writer():
        say("start")
        table = fake_table(store, args.d)
        present = table.keys()
        written = 0
        for i in range(args.n):
            key = fake_key(i)
            if key in present:
                say(f"skip {key}")
                continue
            say(f"begin {key}")
            table.write(key, fake_features(i, args.d), extra_attrs={"versions": {"fake": "1"}})
            say(f"done {key}")
            written += 1
            if args.compact_every and written % args.compact_every == 0:
                say("compact-begin")
                table.compact()
                say("compact-end")
        say("compact-begin")
        table.compact()
        say("compact-end")
        say("finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
