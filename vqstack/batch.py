"""Running one job per file over a batch: failures are recorded, never fatal to the batch.

Why one helper: every batch command (frames, extract, fuse predict) promises the same thing — a
one-line error naming the file and the reason, the rest of the batch goes on, the failures are
written to a file, and the exit code says whether any failed.
"""

from __future__ import annotations

import csv
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class Failure:
    path: str
    reason: str


@dataclass
class BatchReport:
    """What happened to each input of a batch command."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)

    def fail(self, path: str | Path, reason: str) -> None:
        """Record a failure and print its one-line error at once (so a long batch shows it)."""
        failure = Failure(str(path), reason.replace("\n", " ").strip())
        self.failed.append(failure)
        print(f"error: {failure.path}: {failure.reason}", file=sys.stderr, flush=True)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def write_failures(self, path: str | Path) -> Path | None:
        """Write ``path,reason`` rows for every failure (nothing, and remove a stale file, if none)."""
        path = Path(path)
        if not self.failed:
            if path.exists():
                path.unlink()
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "reason"])
            for f in self.failed:
                writer.writerow([f.path, f.reason])
        return path

    def summary(self) -> str:
        return f"{len(self.done)} done, {len(self.skipped)} skipped, {len(self.failed)} failed"
