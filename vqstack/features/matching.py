"""Match label ids (paths as written in a label file) to stored videos.

Why this is more than a dict lookup: label files name videos by a path relative to some dataset
folder (``train/0001.mp4``), by a bare file name (``0001.mp4``) or by a stem (KoNViD's
``3339962845``), while the store records the absolute paths each video was extracted from, plus
every later path it was seen at (aliases). The rule, applied in order until a level matches:

1. exact: ``videos_root/id`` exists -> its content key (done by the store, not here);
2. path suffix: the id's normalised path components end a recorded path (``a/b.mp4`` matches
   ``/data/x/a/b.mp4`` but not ``/data/xa/b.mp4``);
3. basename: the id's last component equals a recorded basename;
4. stem: the id's last component equals a recorded basename without its extension.

If a level matches two different videos (different keys) the id is ambiguous and we refuse to guess.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict

from vqstack.errors import StoreError


def normalise(path: str) -> tuple[str, ...]:
    """Path components, with ``\\`` as a separator, ``.``/empty parts dropped and ``..`` resolved."""
    text = posixpath.normpath(str(path).replace("\\", "/"))
    return tuple(p for p in text.split("/") if p not in ("", "."))


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name


class PathIndex:
    """Index of ``{key: [paths]}`` answering :meth:`match` for label ids."""

    def __init__(self, paths: dict[str, list[str]]) -> None:
        self._by_base: dict[str, list[tuple[tuple[str, ...], str, str]]] = defaultdict(list)
        self._by_stem: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for key, plist in paths.items():
            for p in plist:
                parts = normalise(p)
                if not parts:
                    continue
                self._by_base[parts[-1]].append((parts, key, p))
                self._by_stem[_stem(parts[-1])].append((p, key))

    def candidates(self, id_: str) -> tuple[str, dict[str, list[str]]]:
        """``(level, {key: [matching paths]})`` at the first level with a match, or ``("", {})``."""
        parts = normalise(id_)
        if not parts:
            return "", {}
        entries = self._by_base.get(parts[-1], [])
        n = len(parts)
        found: dict[str, list[str]] = defaultdict(list)
        for stored, key, p in entries:
            if len(stored) >= n and stored[-n:] == parts:
                found[key].append(p)
        if found:
            return "suffix", dict(found)
        for _, key, p in entries:
            found[key].append(p)
        if found:
            return "basename", dict(found)
        for stored_path, key in self._by_stem.get(parts[-1], []):
            found[key].append(stored_path)
        if found:
            return "stem", dict(found)
        return "", {}

    def match(self, id_: str, *, table: str = "") -> str | None:
        """The key of the one video ``id_`` names, None if none; StoreError if it names several."""
        level, found = self.candidates(id_)
        if len(found) > 1:
            shown = "; ".join(
                f"{key} at {', '.join(paths[:3])}"
                for key, paths in sorted(found.items())[:10]
            )
            where = f" in table {table}" if table else ""
            raise StoreError(
                f"id {id_!r} is ambiguous{where}: its {level} matches {len(found)} different videos "
                f"({shown}); give a longer relative path in the labels or pass the videos root"
            )
        return next(iter(found), None)
