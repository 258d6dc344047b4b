"""Feature store: layout, round trips, compaction, id matching, locking, corruption and repair."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from vqstack.errors import MissingFeaturesError, StoreError
from vqstack.features import FeatureStore, Table, VideoFeatures, content_key, table_name

REPO = Path(__file__).resolve().parents[1]
CONFIG = {"frames": 8, "stride": 2, "resize": [224, 224]}


def make_features(i: int, path: str | Path | None, *, t: int = 12, d: int = 6) -> VideoFeatures:
    rng = np.random.default_rng(i)
    steps = rng.standard_normal((t, d)).astype(np.float32)
    video: dict[str, Any] = {"fps": 25.0, "width": 320, "height": 240, "duration": t / 25, "num_frames": t}
    if path is not None:
        video["path"] = str(path)
    return VideoFeatures(
        steps=steps,
        timestamps=np.arange(t) / 25.0,
        pooled={"mean": steps.mean(0), "std": steps.std(0), "score": np.array([float(i)])},
        feature_names=[f"feat{j}" for j in range(d)],
        video=video,
    )


def key_of(i: int) -> str:
    return f"f{i:040x}"


def assert_same(a: VideoFeatures, b: VideoFeatures) -> None:
    np.testing.assert_array_equal(a.steps, b.steps.astype(np.float32))
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    assert sorted(a.pooled) == sorted(b.pooled)
    for name in a.pooled:
        np.testing.assert_array_equal(a.pooled[name], b.pooled[name])
    assert a.feature_names == b.feature_names
    assert a.video == b.video


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    return FeatureStore(tmp_path / "store")


@pytest.fixture
def table(store: FeatureStore) -> Table:
    return store.table("nss", "1.0", CONFIG, "ab" * 32)


def fill(table: Table, ids: range, folder: str = "/data/videos") -> dict[str, VideoFeatures]:
    written = {}
    for i in ids:
        written[key_of(i)] = make_features(i, f"{folder}/{i}.mp4")
        table.write(key_of(i), written[key_of(i)])
    return written


# ------------------------------------------------------------------ layout, round trip
def test_table_name_is_stable_and_config_sensitive(store: FeatureStore, table: Table) -> None:
    assert table.name == table_name("nss", "1.0", CONFIG, "ab" * 32)
    assert table.name.startswith("nss-") and len(table.name) == len("nss-") + 8
    reordered = dict(reversed(list(CONFIG.items())))
    assert store.table("nss", "1.0", reordered, "ab" * 32).name == table.name
    others = {
        store.table("nss", "1.1", CONFIG, "ab" * 32).name,
        store.table("nss", "1.0", {**CONFIG, "frames": 16}, "ab" * 32).name,
        store.table("nss", "1.0", CONFIG, None).name,
    }
    assert table.name not in others and len(others) == 3
    with pytest.raises(StoreError, match="invalid extractor name"):
        store.table("../evil", "1", {}, None)
    with pytest.raises(StoreError, match="invalid video key"):
        table.write("../x", make_features(0, None))


def test_round_trip_with_all_attrs(store: FeatureStore, table: Table, tmp_path: Path) -> None:
    feats = make_features(3, tmp_path / "clips" / "a.mp4")
    table.write(key_of(3), feats, extra_attrs={"versions": {"torch": "2.4.1"}, "device": "cpu", "batch": [1, 2]})
    assert table.path == store.root / f"{table.name}.h5" and table.path.exists()
    assert_same(table.read(key_of(3)), feats)
    a = table.attrs(key_of(3))
    assert a["path"] == str(tmp_path / "clips" / "a.mp4")
    assert a["aliases"] == [a["path"]]
    assert a["duration"] == pytest.approx(12 / 25) and a["fps"] == 25.0 and a["num_frames"] == 12
    assert a["size"] == (320, 240)
    assert a["extractor"] == "nss" and a["extractor_version"] == "1.0"
    assert a["config"] == CONFIG and a["weights_sha256"] == "ab" * 32
    assert dt.datetime.fromisoformat(a["created_utc"].replace("Z", "+00:00")).tzinfo is not None
    assert {"python", "numpy", "h5py", "torch"} <= set(a["versions"])
    assert a["versions"]["torch"] == "2.4.1"
    assert a["device"] == "cpu" and json.loads(a["batch"]) == [1, 2]
    assert a["steps_shape"] == (12, 6) and a["pooled"] == ["mean", "score", "std"]
    with h5py.File(table.path, "r") as f:  # the main file carries the table metadata
        assert f.attrs["extractor"] == "nss" and json.loads(f.attrs["config"]) == CONFIG
    with pytest.raises(StoreError, match="overwrite a store attribute"):
        table.write(key_of(4), feats, extra_attrs={"path": "x"})
    with pytest.raises(StoreError, match="not in table"):
        table.read(key_of(99))


def test_empty_steps_and_no_names(table: Table) -> None:
    feats = VideoFeatures(steps=np.zeros((0, 4)), timestamps=np.zeros(0), pooled={"mean": np.zeros(4)})
    table.write(key_of(1), feats)
    back = table.read(key_of(1))
    assert back.steps.shape == (0, 4) and back.feature_names is None and back.video == {}


def test_keys_and_has_across_main_and_shards(table: Table) -> None:
    written = fill(table, range(3))
    assert table.compact() == 3
    written |= fill(table, range(3, 5))
    assert table.shard_keys() == [key_of(3), key_of(4)]
    assert table.keys() == set(written) and len(table) == 5
    assert all(table.has(k) and k in table for k in written)
    assert not table.has(key_of(9))
    for key, feats in written.items():
        assert_same(table.read(key), feats)


def test_compaction_preserves_everything_and_is_idempotent(store: FeatureStore, table: Table) -> None:
    written = fill(table, range(4))
    attrs_before = {k: table.attrs(k) for k in written}
    assert table.compact() == 4
    assert table.shard_keys() == [] and table.keys() == set(written)
    for key, feats in written.items():
        assert_same(table.read(key), feats)
        assert table.attrs(key) == attrs_before[key]
    st = table.path.stat()
    assert table.compact() == 0 and store.compact_all() == {table.name: 0}
    assert table.path.stat().st_ino == st.st_ino  # nothing rewritten
    # re-writing a compacted video: the shard wins, compaction replaces the old copy
    newer = make_features(100, "/data/videos/0.mp4")
    table.write(key_of(0), newer)
    assert_same(table.read(key_of(0)), newer)
    assert table.compact() == 1
    assert_same(table.read(key_of(0)), newer)
    assert table.keys() == set(written)
    assert store.tables()[0].n_videos == 4


def test_stray_tmp_files_ignored_then_cleaned(store: FeatureStore, table: Table) -> None:
    fill(table, range(2))
    junk = [table.shard_dir / f"{key_of(7)}.h5.tmp", store.root / f"{table.name}.h5.tmp"]
    for p in junk:
        p.write_bytes(b"half written")
    assert table.keys() == {key_of(0), key_of(1)}
    fresh = FeatureStore(store.root)  # a new writer cleans them on taking the lock
    with fresh.writer():
        pass
    assert not any(p.exists() for p in junk)


def test_add_alias_delete_rm(store: FeatureStore, table: Table) -> None:
    fill(table, range(3))
    table.compact()
    assert table.add_alias(key_of(1), "/elsewhere/renamed.mp4")
    assert not table.add_alias(key_of(1), "/elsewhere/renamed.mp4")
    assert table.attrs(key_of(1))["aliases"] == ["/data/videos/1.mp4", "/elsewhere/renamed.mp4"]
    # a re-write keeps the aliases
    table.write(key_of(1), make_features(1, "/third/place.mp4"))
    assert table.attrs(key_of(1))["aliases"] == [
        "/data/videos/1.mp4", "/elsewhere/renamed.mp4", "/third/place.mp4"
    ]
    assert table.attrs(key_of(1))["path"] == "/data/videos/1.mp4"
    assert table.delete([key_of(1), key_of(2), key_of(50)]) == 2
    assert table.keys() == {key_of(0)}
    assert store.rm("nss", [key_of(0)])["removed_videos"] == 1
    fill(table, range(2))
    report = store.rm(table.name)
    assert report == {"table": table.name, "removed_videos": 2, "removed_table": True}
    assert store.ls() == []


# ------------------------------------------------------------------ matching ids
def test_read_matrix_alignment_pooling_and_columns(store: FeatureStore, table: Table) -> None:
    written = fill(table, range(6))
    table.compact()
    written |= fill(table, range(6, 8))
    ids = ["7.mp4", "videos/2.mp4", "/data/videos/5.mp4", "0.mp4", "3"]  # suffix, basename, stem
    X, cols = store.read_matrix(ids, "nss")
    expected = [7, 2, 5, 0, 3]
    np.testing.assert_allclose(X, np.stack([written[key_of(i)].pooled["mean"] for i in expected]))
    assert X.dtype == np.float64 and cols[0] == f"{table.name}/mean/feat0" and len(cols) == 6
    X2, cols2 = store.read_matrix(ids, table.name, ["mean", "score"])
    assert X2.shape == (5, 7) and list(X2[:, -1]) == [7.0, 2.0, 5.0, 0.0, 3.0]
    assert cols2[-1] == f"{table.name}/score/0"
    steps = store.read_steps(["1.mp4", "6.mp4"], "nss")
    np.testing.assert_array_equal(steps[1], written[key_of(6)].steps)
    with pytest.raises(StoreError, match=r"no pooled vector 'p10'.*mean, score, std"):
        store.read_matrix(["1.mp4"], "nss", "p10")


def test_read_matrix_missing_ids_listed(store: FeatureStore, table: Table) -> None:
    fill(table, range(3))
    ids = ["0.mp4", "nope.mp4", "2.mp4", *[f"gone{i}.mp4" for i in range(25)]]
    with pytest.raises(MissingFeaturesError) as exc:
        store.read_matrix(ids, "nss")
    assert exc.value.missing == ["nope.mp4", *[f"gone{i}.mp4" for i in range(25)]]
    msg = str(exc.value)
    assert "26 of 28" in msg and "nope.mp4" in msg and "gone18.mp4" in msg and "gone24.mp4" not in msg


def test_read_matrix_ambiguous_and_disambiguated(store: FeatureStore, table: Table) -> None:
    table.write(key_of(1), make_features(1, "/ds/train/clip.mp4"))
    table.write(key_of(2), make_features(2, "/ds/test/clip.mp4"))
    with pytest.raises(StoreError, match=r"'clip.mp4' is ambiguous.*2 different videos") as exc:
        store.read_matrix(["clip.mp4"], "nss")
    assert key_of(1) in str(exc.value) and "/ds/test/clip.mp4" in str(exc.value)
    X, _ = store.read_matrix(["test/clip.mp4", "train/clip.mp4"], "nss", "score")
    assert list(X[:, 0]) == [2.0, 1.0]
    # a path suffix must match whole components: 'est/clip.mp4' falls back to the basename level
    with pytest.raises(StoreError, match="its basename matches 2"):
        store.read_matrix(["est/clip.mp4"], "nss")


def test_renamed_file_matches_by_content_and_alias(store: FeatureStore, table: Table, tmp_path: Path) -> None:
    old_root, new_root = tmp_path / "old", tmp_path / "new"
    old_root.mkdir()
    (old_root / "a.mp4").write_bytes(b"pretend video A" * 100)
    (old_root / "b.mp4").write_bytes(b"pretend video B" * 100)
    for i, name in enumerate(["a.mp4", "b.mp4"]):
        table.write(content_key(old_root / name), make_features(i, old_root / name))
    shutil.move(old_root, new_root)
    (new_root / "a.mp4").rename(new_root / "renamed_a.mp4")
    X, _ = store.read_matrix(["renamed_a.mp4", "b.mp4"], "nss", "score", videos_root=new_root)
    assert list(X[:, 0]) == [0.0, 1.0]
    assert store.keycache.misses == 2
    store.read_matrix(["renamed_a.mp4"], "nss", "score", videos_root=new_root)
    assert store.keycache.hits == 1  # second lookup: a stat, no hashing
    # without the videos root, the recorded path (an alias) still matches the old name
    X, _ = store.read_matrix(["old/a.mp4"], "nss", "score")
    assert list(X[:, 0]) == [0.0]
    with pytest.raises(MissingFeaturesError):
        store.read_matrix(["renamed_a.mp4"], "nss", "score")
    table.add_alias(content_key(new_root / "renamed_a.mp4"), new_root / "renamed_a.mp4")
    assert list(store.read_matrix(["renamed_a.mp4"], "nss", "score")[0][:, 0]) == [0.0]
    # a file present under videos_root whose bytes changed is not matched by name
    (new_root / "b.mp4").write_bytes(b"re-encoded B")
    with pytest.raises(MissingFeaturesError):
        store.read_matrix(["b.mp4"], "nss", videos_root=new_root)


def test_extractor_resolution(store: FeatureStore, table: Table) -> None:
    fill(table, range(2))
    other = store.table("nss", "2.0", CONFIG, None)
    fill(other, range(1))
    with pytest.raises(StoreError, match=r"'nss' has 2 tables.*name one table") as exc:
        store.read_matrix(["0.mp4"], "nss")
    assert table.name in str(exc.value) and other.name in str(exc.value)
    assert store.read_matrix(["0.mp4"], other.name)[0].shape == (1, 6)
    assert {t.name for t in store.find_tables("nss")} == {table.name, other.name}
    with pytest.raises(StoreError, match="no table 'vgg'"):
        store.read_matrix(["0.mp4"], "vgg")


def test_ls_info_export(store: FeatureStore, table: Table, tmp_path: Path) -> None:
    written = fill(table, range(3))
    table.compact()
    [row] = store.ls()
    assert row["name"] == table.name and row["n_videos"] == 3 and row["file_size"] > 0
    info = store.info("nss")
    assert info["kind"] == "table" and [v["key"] for v in info["videos"]] == sorted(written)
    vinfo = store.info(key_of(2))
    with pytest.raises(StoreError, match="matches several videos"):
        store.info(key_of(2)[:12])
    assert vinfo["kind"] == "video" and vinfo["tables"][0]["attrs"]["path"] == "/data/videos/2.mp4"
    out = store.export("nss", tmp_path / "out" / "feats.npz")
    assert out["videos"] == 3
    with np.load(tmp_path / "out" / "feats.npz") as z:
        keys = list(z["keys"])
        assert keys == sorted(written)
        np.testing.assert_allclose(z["pooled_mean"][1], written[keys[1]].pooled["mean"])
        off = z["steps_offsets"]
        np.testing.assert_array_equal(z["steps"][off[2] : off[3]], written[keys[2]].steps)
        assert z["paths"][0] == "/data/videos/0.mp4" and str(z["table"]) == table.name
    with pytest.raises(StoreError, match=r"\.npz or \.parquet"):
        store.export("nss", tmp_path / "feats.csv")
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    store.export("nss", tmp_path / "feats.parquet")
    t = pq.read_table(tmp_path / "feats.parquet")
    assert t.column("key").to_pylist() == sorted(written) and "pooled_std" in t.column_names


# ------------------------------------------------------------------ locking
LOCK_HOLDER = """
import sys, time
from vqstack.features import FeatureStore
with FeatureStore(sys.argv[1]).writer():
    print("locked", flush=True)
    time.sleep(60)
"""


def test_second_writer_gets_lock_error(store: FeatureStore, table: Table) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(store.root)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        busy = rf"being written by another vqstack process \(pid {child.pid}, since"
        with pytest.raises(StoreError, match=busy), store.writer():
            pass
        with pytest.raises(StoreError, match="use another --store"):
            table.write(key_of(0), make_features(0, None))
        assert table.keys() == set()  # readers need no lock
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with store.writer():  # the OS released the killed holder's lock
        table.write(key_of(0), make_features(0, None))
        other = FeatureStore(store.root)  # another object in this process is another writer
        with pytest.raises(StoreError, match=f"pid {os.getpid()}"), other.writer():
            pass
    assert table.has(key_of(0))


# ------------------------------------------------------------------ corruption and repair
def test_truncated_main_file_error_and_repair(store: FeatureStore, table: Table) -> None:
    fill(table, range(4))
    table.compact()
    shard_written = fill(table, range(4, 6))
    data = table.path.read_bytes()
    table.path.write_bytes(data[: len(data) // 2])
    fresh = FeatureStore(store.root)
    with pytest.raises(StoreError, match=rf"{table.name}\.h5: unreadable HDF5 file.*features repair --store"):
        fresh.read_matrix(["4.mp4"], "nss")
    with pytest.raises(StoreError, match="unreadable HDF5"):
        fresh.open_table(table.name).keys()
    report = fresh.repair()
    assert report["tables"][table.name]["kept"] == 2
    assert report["tables"][table.name]["main_file_lost"] is True
    assert any("corrupt" in p for p in report["moved"])
    t = fresh.open_table(table.name)
    assert t.keys() == set(shard_written)
    X, _ = fresh.read_matrix(["4.mp4", "5.mp4"], "nss", "score")
    assert list(X[:, 0]) == [4.0, 5.0]
    assert t.compact() == 2 and t.keys() == set(shard_written)


def _damage_steps(path: Path, key: str) -> None:
    with h5py.File(path, "r") as f:
        info = f[key]["steps"].id.get_chunk_info(0)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + info.size // 2)
        fh.write(b"\xde\xad\xbe\xef" * 4)


def test_damaged_video_in_main_rebuilt_by_repair(store: FeatureStore, table: Table) -> None:
    written = fill(table, range(4))
    table.compact()
    _damage_steps(table.path, key_of(2))
    with pytest.raises(StoreError, match=rf"{table.name}\.h5.*video {key_of(2)}"):
        table.read(key_of(2))
    assert_same(table.read(key_of(1)), written[key_of(1)])
    report = store.repair()
    assert report["tables"][table.name] == {"kept": 3, "lost": [key_of(2)], "main_file_lost": False}
    assert report["rebuilt"] == [str(table.path)]
    assert list((store.root / "corrupt").glob(f"{table.name}.h5.before-repair*"))
    assert table.keys() == set(written) - {key_of(2)}
    for k in table:
        assert_same(table.read(k), written[k])


def test_damaged_shard_skipped_with_warning(
    store: FeatureStore, table: Table, caplog: pytest.LogCaptureFixture
) -> None:
    written = fill(table, range(3))
    table.compact()
    table.write(key_of(1), make_features(101, "/data/videos/1.mp4"))  # newer copy in a shard
    table.write(key_of(5), make_features(5, "/data/videos/5.mp4"))
    for k in (key_of(1), key_of(5)):
        (table.shard_dir / f"{k}.h5").write_bytes(b"\0" * 100)
    with caplog.at_level(logging.WARNING):
        X, _ = store.read_matrix(["0.mp4", "1.mp4", "2.mp4"], "nss", "score")
    assert list(X[:, 0]) == [0.0, 1.0, 2.0]  # the older, intact copy of video 1
    assert f"{key_of(5)}.h5" in caplog.text and "damaged shard" in caplog.text
    with pytest.raises(StoreError, match=rf"{key_of(5)}\.h5: unreadable HDF5"):
        table.read(key_of(5))
    with pytest.raises(MissingFeaturesError):
        store.read_matrix(["5.mp4"], "nss")
    assert table.compact() == 0  # damaged shards are not merged
    report = store.repair()
    assert report["tables"][table.name] == {"kept": 3, "lost": [key_of(5)], "main_file_lost": False}
    assert table.keys() == set(written)
    assert_same(table.read(key_of(1)), written[key_of(1)])
