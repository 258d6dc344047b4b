"""Extractor registry: name -> class, resolved lazily so importing vqstack loads no network code.

Why explicit strings: no import-time side effects, no swallowed import errors, and an unknown name
gets a "did you mean" suggestion. Adding an extractor is one line here.
"""

from __future__ import annotations

import difflib
import importlib

from vqstack.errors import ConfigError
from vqstack.extract.base import Extractor

_REGISTRY: dict[str, str] = {
    "nss": "vqstack.extract.nss:NSSExtractor",
    "frame_iqa": "vqstack.extract.frame_iqa:FrameIQAExtractor",
    "slowfast": "vqstack.extract.slowfast:SlowFastExtractor",
    "clip": "vqstack.extract.clip:CLIPExtractor",
    "fragments": "vqstack.extract.fragments:FragmentsExtractor",
}


def available() -> list[str]:
    return sorted(_REGISTRY)


def register(name: str, target: str) -> None:
    """Add an extractor (``module:Class``); a duplicate name is an error."""
    if name in _REGISTRY:
        raise ConfigError(f"extractor '{name}' is already registered ({_REGISTRY[name]})")
    _REGISTRY[name] = target


def get_extractor_class(name: str) -> type[Extractor]:
    """The class registered as ``name``, ``package.module:Class`` for an extractor outside vqstack, or
    ``branch:PATH`` for a branch trained by ``vqstack train`` (PATH = its ``best.pt``)."""
    if name.startswith("branch:"):
        from vqstack.branches.extractor import branch_extractor_class

        return branch_extractor_class(name[len("branch:"):])
    if ":" in name and name not in _REGISTRY:
        module_name, cls_name = name.split(":", 1)
        try:
            cls = getattr(importlib.import_module(module_name), cls_name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"extractor '{name}' cannot be imported ({exc})") from exc
        if not (isinstance(cls, type) and issubclass(cls, Extractor)):
            raise ConfigError(f"'{name}' is not a vqstack Extractor subclass")
        return cls
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown extractor '{name}'{hint}; available: {', '.join(available())}")
    module_name, cls_name = _REGISTRY[name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls


def parse_feature_list(text: str) -> list[str]:
    """``"nss,slowfast"`` -> ``["nss", "slowfast"]`` (validated, order kept, duplicates dropped)."""
    names: list[str] = []
    for raw in text.split(","):
        name = raw.strip()
        if not name:
            continue
        if not name.startswith("branch:"):
            get_extractor_class(name)  # validates
        if name not in names:
            names.append(name)
    if not names:
        raise ConfigError("--feat needs at least one extractor name")
    return names
