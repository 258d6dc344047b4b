"""Label files: every accepted format, and a clear InputError for every broken one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vqstack.errors import InputError
from vqstack.fusion.labels import Labels, basename, read_labels

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def write(tmp_path: Path, text: str, name: str = "labels.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_fastvqa_labels_txt_four_fields(tmp_path: Path) -> None:
    # Lines as in FAST-VQA's examplar_data_labels/train_labels.txt: "path, duration, fps, MOS".
    path = write(
        tmp_path,
        "Video/B107.mp4, 10.01, 29.97002997002997, 76.7188\n"
        "Video/A091.mp4, 10.021115, 29.837, 46.2238\n"
        "\n"
        "Video/A065.mp4, 10.030622, 30.0, 81.8222\n",
        "labels.txt",
    )
    labels = read_labels(path)
    assert labels.ids == ["Video/B107.mp4", "Video/A091.mp4", "Video/A065.mp4"]
    np.testing.assert_allclose(labels.mos, [76.7188, 46.2238, 81.8222])
    assert labels.groups is None
    assert labels.source == path
    assert labels.basenames() == ["B107.mp4", "A091.mp4", "A065.mp4"]


def test_headerless_path_and_mos(tmp_path: Path) -> None:
    labels = read_labels(write(tmp_path, "a.mp4,3.5\nsub/b.mp4, 2\n", "l.txt"))
    assert labels.ids == ["a.mp4", "sub/b.mp4"]
    np.testing.assert_allclose(labels.mos, [3.5, 2.0])


def test_kvq_csv(tmp_path: Path) -> None:
    labels = read_labels(write(tmp_path, "filename,score\ntrain/0001.mp4,3.25\ntrain/0002.mp4,1.5\n"))
    assert labels.ids == ["train/0001.mp4", "train/0002.mp4"]
    np.testing.assert_allclose(labels.mos, [3.25, 1.5])


def test_bom_and_case_insensitive_known_columns(tmp_path: Path) -> None:
    labels = read_labels(write(tmp_path, "\ufeffVideo_Name,MOS\nx.mp4,4\n"))
    assert labels.ids == ["x.mp4"] and labels.mos.tolist() == [4.0]


@pytest.mark.skipif(not (SHARED_DATA / "clive-dev" / "mos.csv").is_file(), reason="shared data not present")
def test_real_clive_mos_csv() -> None:
    labels = read_labels(SHARED_DATA / "clive-dev" / "mos.csv")  # image,mos,mos_std
    assert len(labels) == 300
    assert labels.ids[0] == "100.bmp"
    assert labels.mos[0] == pytest.approx(32.5611)
    assert labels.mos.min() >= 0 and labels.mos.max() <= 100


@pytest.mark.skipif(not (SHARED_DATA / "videos" / "konvid" / "mos.csv").is_file(), reason="shared data not present")
def test_real_konvid_mos_csv() -> None:
    labels = read_labels(SHARED_DATA / "videos" / "konvid" / "mos.csv")  # video,mos
    assert labels.ids == ["10053703034.mp4", "2999049224.mp4", "5115335471.mp4"]
    np.testing.assert_allclose(labels.mos, [3.46, 3.44, 2.16])


def test_explicit_columns_and_groups(tmp_path: Path) -> None:
    text = "clip,src,dmos_inverted,extra\nc1.mp4,s1,10,x\nc2.mp4,s1,20,y\nc3.mp4,s2,30,z\n"
    labels = read_labels(write(tmp_path, text), id_column="clip", score_column="dmos_inverted", group_column="src")
    assert labels.ids == ["c1.mp4", "c2.mp4", "c3.mp4"]
    assert labels.groups == ["s1", "s1", "s2"]
    np.testing.assert_allclose(labels.mos, [10, 20, 30])


def test_group_column_is_auto_detected(tmp_path: Path) -> None:
    labels = read_labels(write(tmp_path, "filename,score,source\na,1,s\nb,2,t\n"))
    assert labels.groups == ["s", "t"]


def test_subset_and_index_of(tmp_path: Path) -> None:
    labels = read_labels(write(tmp_path, "filename,score,group\na,1,g\nb,2,g\nc,3,h\n"))
    sub = labels.subset([2, 0])
    assert isinstance(sub, Labels)
    assert sub.ids == ["c", "a"] and sub.mos.tolist() == [3.0, 1.0] and sub.groups == ["h", "g"]
    assert labels.index_of(["c", "b"]).tolist() == [2, 1]
    with pytest.raises(InputError, match=r"1 id.*not in this labels file: zz"):
        labels.index_of(["a", "zz"])


def test_basename_handles_posix_and_windows_paths() -> None:
    assert basename("Video/B107.mp4") == "B107.mp4"
    assert basename(r"C:\data\KoNViD\123.mp4") == "123.mp4"
    assert basename("plain.mp4") == "plain.mp4"


def test_duplicated_ids_are_listed(tmp_path: Path) -> None:
    path = write(tmp_path, "filename,score\na.mp4,1\nb.mp4,2\na.mp4,3\nb.mp4,4\nb.mp4,5\nc.mp4,1\n")
    with pytest.raises(InputError, match=r"2 duplicated id\(s\): a.mp4 \(x2\), b.mp4 \(x3\)") as info:
        read_labels(path)
    assert info.value.path == str(path)


@pytest.mark.parametrize("bad", ["abc", "nan", "inf", ""])
def test_non_numeric_or_nan_scores_list_their_lines(tmp_path: Path, bad: str) -> None:
    path = write(tmp_path, f"filename,score\na.mp4,1\nb.mp4,{bad}\n")
    with pytest.raises(InputError, match=rf"1 row\(s\) without a finite numeric score: line 3 \('{bad}'\)"):
        read_labels(path)


def test_headerless_nan_score_is_reported(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="line 2"):
        read_labels(write(tmp_path, "a.mp4, 10, 30, 50\nb.mp4, 10, 30, nan\n", "l.txt"))


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="empty labels file"):
        read_labels(write(tmp_path, "\n\n"))
    with pytest.raises(InputError, match="header but no data rows"):
        read_labels(write(tmp_path, "filename,score\n"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="labels file not found"):
        read_labels(tmp_path / "nope.csv")


def test_unknown_column_lists_the_available_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "filename,score,mos_std\na,1,0.1\n")
    with pytest.raises(
        InputError,
        match=r"no score column 'scroe' \(did you mean 'score'\?\); available columns: "
        r"filename, score, mos_std",
    ):
        read_labels(path, score_column="scroe")
    with pytest.raises(InputError, match=r"no id column found.*available columns: clip, score"):
        read_labels(write(tmp_path, "clip,score\na,1\n"))


def test_ambiguous_columns_must_be_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="several possible id columns"):
        read_labels(write(tmp_path, "video,filename,mos\na,b,1\n"))


def test_wrong_field_counts_are_listed(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"line 2 \(3 fields\)"):
        read_labels(write(tmp_path, "a.mp4, 10, 30, 50\nb.mp4, 10, 50\n", "l.txt"))
    with pytest.raises(InputError, match=r"line 3 \(1 fields\)"):
        read_labels(write(tmp_path, "filename,score\na,1\nb\n"))


def test_naming_columns_of_a_headerless_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no header line"):
        read_labels(write(tmp_path, "a.mp4,3\n", "l.txt"), score_column="mos")


def test_empty_ids_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="empty id: lines 3"):
        read_labels(write(tmp_path, "filename,score\na,1\n,2\n"))
