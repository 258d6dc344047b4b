"""One exception hierarchy for every user-facing failure.

Why: the CLI turns any :class:`VqstackError` into a one-line message naming the file and the reason,
records it in the failures file and goes on with the rest of the batch. Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class VqstackError(Exception):
    """Base class of every error that is the user's input, not our bug."""


class InputError(VqstackError):
    """A file that cannot be used: missing, empty, not a video, undecodable, ..."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # worker processes send errors back pickled; the default would call InputError(message)
        return (type(self), (self.path, self.reason))


class ConfigError(VqstackError):
    """A YAML config or a CLI option that is invalid (unknown key, wrong type, bad value)."""


class WeightsError(VqstackError):
    """A weights file that is missing, has the wrong SHA-256, or does not match the model's keys."""


class StoreError(VqstackError):
    """The feature store cannot be opened, is locked by another process, or lacks requested videos."""


class MissingFeaturesError(StoreError):
    """Some requested videos are not in the store; ``missing`` lists their ids."""

    def __init__(self, message: str, missing: list[str]) -> None:
        self.missing = list(missing)
        super().__init__(message)

    def __reduce__(self) -> tuple[type, tuple[str, list[str]]]:
        return (type(self), (str(self), self.missing))


class NotFittedError(VqstackError, ValueError, AttributeError):
    """An estimator was used before ``fit`` (mirrors scikit-learn's exception of the same name)."""
