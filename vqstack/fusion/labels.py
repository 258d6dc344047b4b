"""Read subjective-score (MOS) label files into one :class:`Labels` type.

Why one reader: every dataset ships its scores differently and the seed projects each parse one
format with ``line.split(",")`` and no checks (a duplicated or non-numeric row silently becomes a
wrong experiment). Accepted formats:

- FAST-VQA / DOVER ``labels.txt``: no header, ``path, duration, fps, MOS`` per line (the fields are
  separated by ``", "``; see VQAssessment/FAST-VQA-and-FasterVQA ``examplar_data_labels``), or just
  ``path, MOS``;
- KVQ challenge CSV with header ``filename,score``;
- CLIVE-style ``image,mos,mos_std`` and KoNViD-style ``video,mos`` CSVs;
- any CSV with a header, naming ``id_column`` / ``score_column`` / ``group_column`` explicitly, or
  with columns whose names are known (case-insensitive): ids from filename, video, video_name, image,
  image_name, name, path, file, id, flickr_id; scores from score, mos, mos_score, label, quality;
  groups from group, source, source_id, content_id.

Ids are kept exactly as written in the file (a relative path such as ``Video/B107.mp4``), because
that is what tells two datasets' ``001.mp4`` apart; :meth:`Labels.basenames` gives the file names.
"""

from __future__ import annotations

import csv
import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
from numpy.typing import NDArray

from vqstack.errors import InputError

__all__ = ["ID_COLUMNS", "Labels", "basename", "read_labels"]

ID_COLUMNS = (
    "filename",
    "video",
    "video_name",
    "image",
    "image_name",
    "name",
    "path",
    "file",
    "id",
    "flickr_id",
)
SCORE_COLUMNS = ("score", "mos", "mos_score", "label", "quality")
GROUP_COLUMNS = ("group", "source", "source_id", "content_id")
_SHOW = 10


def basename(identifier: str) -> str:
    """File name of an id written as a POSIX or Windows path (``Video/B107.mp4`` -> ``B107.mp4``)."""
    return PureWindowsPath(PurePosixPath(identifier).name).name


@dataclass(frozen=True)
class Labels:
    """Ids, MOS and optional groups (e.g. source video) read from one labels file."""

    ids: list[str]
    mos: NDArray[np.float64]
    groups: list[str] | None
    source: Path

    def __len__(self) -> int:
        return len(self.ids)

    def basenames(self) -> list[str]:
        """The file name of every id (for matching against a folder or a store keyed by name)."""
        return [basename(i) for i in self.ids]

    def index_of(self, ids: Sequence[str]) -> NDArray[np.intp]:
        """Positions of ``ids`` in this file; unknown ids raise :class:`InputError` listing them."""
        where = {name: i for i, name in enumerate(self.ids)}
        missing = [name for name in ids if name not in where]
        if missing:
            raise InputError(self.source, f"{len(missing)} id(s) not in this labels file: {_listing(missing)}")
        return np.asarray([where[name] for name in ids], dtype=np.intp)

    def subset(self, index: Sequence[int] | NDArray[np.intp]) -> Labels:
        """The labels of the rows at ``index`` (e.g. a split's test set), in that order."""
        idx = np.asarray(index, dtype=np.intp)
        return Labels(
            ids=[self.ids[i] for i in idx],
            mos=self.mos[idx].copy(),
            groups=None if self.groups is None else [self.groups[i] for i in idx],
            source=self.source,
        )


def _listing(items: Sequence[object]) -> str:
    shown = ", ".join(str(v) for v in items[:_SHOW])
    return shown + (f", ... ({len(items)} in all)" if len(items) > _SHOW else "")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _find_column(
    header: list[str], wanted: str | None, known: tuple[str, ...], role: str, path: Path, required: bool
) -> int | None:
    lowered = [h.strip().lower() for h in header]
    if wanted is not None:
        if wanted in header:
            return header.index(wanted)
        if wanted.lower() in lowered:
            return lowered.index(wanted.lower())
        close = difflib.get_close_matches(wanted, header, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise InputError(path, f"no {role} column '{wanted}'{hint}; available columns: {', '.join(header)}")
    hits = [i for i, name in enumerate(lowered) if name in known]
    if len(hits) > 1:
        raise InputError(
            path,
            f"several possible {role} columns ({', '.join(header[i] for i in hits)}); name one with {role}_column",
        )
    if hits:
        return hits[0]
    if required:
        raise InputError(
            path,
            f"no {role} column found (looked for {', '.join(known)}); available columns: "
            f"{', '.join(header)}; name it with {role}_column",
        )
    return None


def read_labels(
    path: str | Path,
    *,
    id_column: str | None = None,
    score_column: str | None = None,
    group_column: str | None = None,
) -> Labels:
    """Read a labels file (format detected from its first line; see the module docstring).

    A file whose first line ends in a number is header-less (FAST-VQA style, 4 or 2 fields); naming
    columns then is an error. Raises :class:`InputError` for a missing or empty file, unknown columns
    (listing the available ones), rows with a missing, non-numeric, NaN or infinite score (listing the
    line numbers), empty ids and duplicated ids (listing them).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "labels file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"labels file is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    rows = [
        (number, [field.strip() for field in row])
        for number, row in enumerate(csv.reader(text.splitlines()), start=1)
        if any(field.strip() for field in row)
    ]
    if not rows:
        raise InputError(path, "empty labels file")

    first = rows[0][1]
    headerless = _is_number(first[-1])
    if headerless:
        if id_column or score_column or group_column:
            raise InputError(
                path,
                "this file has no header line (its first line ends in a number), so columns cannot be "
                "named; drop id_column/score_column/group_column",
            )
        id_idx, score_idx, group_idx = 0, None, None
        data = rows
    else:
        header = first
        id_idx = _find_column(header, id_column, ID_COLUMNS, "id", path, required=True)
        score_idx = _find_column(header, score_column, SCORE_COLUMNS, "score", path, required=True)
        group_idx = _find_column(header, group_column, GROUP_COLUMNS, "group", path, required=group_column is not None)
        data = rows[1:]
        if not data:
            raise InputError(path, "labels file has a header but no data rows")

    ids: list[str] = []
    scores: list[float] = []
    groups: list[str] = []
    bad_scores: list[str] = []
    bad_shape: list[str] = []
    empty_ids: list[int] = []
    for number, fields in data:
        if headerless:
            if len(fields) not in (2, 4):
                bad_shape.append(f"line {number} ({len(fields)} fields)")
                continue
            raw_score = fields[-1]
        else:
            width = 1 + max(i for i in (id_idx, score_idx, group_idx) if i is not None)
            if len(fields) < width:
                bad_shape.append(f"line {number} ({len(fields)} fields)")
                continue
            raw_score = fields[score_idx]  # type: ignore[index]
        identifier = fields[id_idx]  # type: ignore[index]
        try:
            value = float(raw_score)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            bad_scores.append(f"line {number} ({raw_score!r})")
        if not identifier:
            empty_ids.append(number)
        ids.append(identifier)
        scores.append(value)
        if group_idx is not None:
            groups.append(fields[group_idx])

    if bad_shape:
        expected = "4 fields (path, duration, fps, MOS) or 2 (path, MOS)" if headerless else "a value per column"
        raise InputError(path, f"rows with the wrong number of fields, expected {expected}: {_listing(bad_shape)}")
    if bad_scores:
        raise InputError(path, f"{len(bad_scores)} row(s) without a finite numeric score: {_listing(bad_scores)}")
    if empty_ids:
        raise InputError(path, f"{len(empty_ids)} row(s) with an empty id: lines {_listing(empty_ids)}")
    seen: dict[str, int] = {}
    duplicates: dict[str, int] = {}
    for identifier in ids:
        seen[identifier] = seen.get(identifier, 0) + 1
        if seen[identifier] == 2:
            duplicates[identifier] = 0
    if duplicates:
        listed = [f"{name} (x{seen[name]})" for name in duplicates]
        raise InputError(path, f"{len(duplicates)} duplicated id(s): {_listing(listed)}")
    return Labels(
        ids=ids,
        mos=np.asarray(scores, dtype=np.float64),
        groups=groups if group_idx is not None else None,
        source=path,
    )
