"""The store's single-writer lock.

Why an ``fcntl.flock`` on ``<root>/.writer.lock``: the kernel drops the lock when the holding
process dies, even on ``kill -9``, so a crashed run never leaves a stale lock behind that a user has
to delete by hand. The pid and start time written into the file are only there for the error message
shown to a second writer.

Caveats: ``flock`` locks belong to the open file description, so a child made by ``fork`` shares its
parent's lock; and on some network file systems ``flock`` is local to one machine (NFS before Linux
2.6.12, some FUSE mounts) -- do not run two writers on two machines against one store there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from pathlib import Path

from vqstack.errors import StoreError

LOCK_NAME = ".writer.lock"


class WriterLock:
    """Exclusive, non-blocking, re-entrant (within one object) writer lock on a store root."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self._fd: int | None = None
        self._depth = 0
        self._mutex = threading.Lock()  # the depth count is shared by the threads of this process

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def holder(self) -> str:
        """What the lock file says about the current (or last) holder, for messages."""
        try:
            text = self.path.read_text(encoding="utf-8").strip()
        except OSError:
            return "unknown holder"
        fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
        if "pid" in fields:
            return f"pid {fields['pid']}, since {fields.get('since', '?')}"
        return "unknown holder"

    def acquire(self) -> bool:
        """Take the lock; return True if this call took it (False if already held by this object).

        Raises StoreError naming the other holder if another process (or another ``WriterLock`` object
        in this process) holds it.
        """
        with self._mutex:
            return self._acquire()

    def _acquire(self) -> bool:
        if self._fd is not None:
            self._depth += 1
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(
                f"{self.root} is being written by another vqstack process ({self.holder()}); "
                "wait for it or use another --store"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"{self.path}: cannot take the writer lock ({exc})") from exc
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        info = f"pid={os.getpid()} since={since}\n".encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, info, 0)
        self._fd = fd
        self._depth = 1
        return True

    def release(self) -> None:
        """Release one level; the lock itself goes when the outermost holder releases."""
        with self._mutex:
            self._release()

    def _release(self) -> None:
        if self._fd is None:
            return
        self._depth -= 1
        if self._depth > 0:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
