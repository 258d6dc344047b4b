"""Content keys and the key cache: equal bytes -> equal key, changed bytes -> new key, reruns cost a stat."""

from __future__ import annotations

import importlib
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from vqstack.features.content_key import KeyCache, content_key, is_content_key

# the package re-exports the function under the module's name, so fetch the module itself
ck = importlib.import_module("vqstack.features.content_key")

BIG = ck.FULL_HASH_LIMIT + 3 * 1024 * 1024 + 12345  # just over the whole-file limit: sampled


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0xFF]))


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.bin"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, BIG, dtype=np.uint8).tobytes())
    return path


def test_small_file_full_hash(tmp_path: Path) -> None:
    a = tmp_path / "a.mp4"
    a.write_bytes(b"some video bytes" * 1000)
    b = tmp_path / "sub" / "b.mkv"
    b.parent.mkdir()
    shutil.copyfile(a, b)
    ka, kb = content_key(a), content_key(b)
    assert ka == kb
    assert ka.startswith("f") and is_content_key(ka)
    _flip(b, 7)
    assert content_key(b) != ka
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert is_content_key(content_key(empty))


def test_sampled_key_detects_sampled_changes(tmp_path: Path, big_file: Path) -> None:
    key = content_key(big_file)
    assert key.startswith("s") and is_content_key(key)
    copy = tmp_path / "copy.bin"
    shutil.copyfile(big_file, copy)
    assert content_key(copy) == key
    regions = ck._sample_offsets(BIG)
    mid_off, mid_len = regions[len(regions) // 2]  # one of the 32 middle blocks
    for offset in (10, BIG - 10, mid_off + mid_len // 2):
        _flip(copy, offset)
        assert content_key(copy) != key, offset
        _flip(copy, offset)  # restore
    assert content_key(copy) == key
    with open(copy, "ab") as fh:  # size is hashed too
        fh.write(b"\0")
    assert content_key(copy) != key


def test_sampled_key_collision_tradeoff_is_real(tmp_path: Path, big_file: Path) -> None:
    """Documented trade-off: a change outside every sampled region keeps the key."""
    regions = ck._sample_offsets(BIG)
    covered = np.zeros(BIG, dtype=bool)
    for off, length in regions:
        covered[off : off + length] = True
    unsampled = int(np.flatnonzero(~covered)[0])
    copy = tmp_path / "copy.bin"
    shutil.copyfile(big_file, copy)
    _flip(copy, unsampled)
    assert content_key(copy) == content_key(big_file)
    # ... and hashing whole (a higher limit) tells them apart
    assert content_key(copy, full_hash_limit=BIG) != content_key(big_file, full_hash_limit=BIG)


def test_sample_regions_cover_head_tail_and_stay_inside() -> None:
    regions = ck._sample_offsets(BIG)
    assert len(regions) == ck.N_BLOCKS + 2
    assert regions[0] == (0, ck.HEAD_BYTES)
    assert regions[-1] == (BIG - ck.TAIL_BYTES, ck.TAIL_BYTES)
    assert all(off >= 0 and off + n <= BIG and n > 0 for off, n in regions)


class _Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, path: str | Path, **kw: int) -> str:
        self.calls += 1
        return _real_content_key(path, **kw)


_real_content_key = ck.content_key


def test_keycache_hit_avoids_rehash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = _Counter()
    monkeypatch.setattr(ck, "content_key", counter)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x" * 5000)
    db = tmp_path / "cache.sqlite"
    with KeyCache(db) as cache:
        k1 = cache.key(video)
        assert cache.key(video) == k1
        assert counter.calls == 1 and cache.hits == 1
    with KeyCache(db) as cache:  # persisted: a new process pays only a stat
        assert cache.key(video) == k1
        assert cache.lookup(video) == k1
        assert counter.calls == 1


def test_keycache_stale_entry_recomputed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = _Counter()
    monkeypatch.setattr(ck, "content_key", counter)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x" * 5000)
    with KeyCache(tmp_path / "cache.sqlite") as cache:
        k1 = cache.key(video)
        video.write_bytes(b"y" * 5001)  # size changed
        assert cache.lookup(video) is None
        k2 = cache.key(video)
        assert k2 != k1 and counter.calls == 2
        st = video.stat()
        os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, new mtime
        assert cache.key(video) == k2 and counter.calls == 3


def test_keycache_corrupt_db_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "cache.sqlite"
    db.write_bytes(b"this is not a database" * 100)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"abc")
    with caplog.at_level(logging.WARNING), KeyCache(db) as cache:
        assert cache.key(video) == content_key(video)
    assert (tmp_path / "cache.sqlite.corrupt").exists()
    with KeyCache(None) as mem:  # memory only
        assert mem.key(video) == mem.key(video) and mem.hits == 1
