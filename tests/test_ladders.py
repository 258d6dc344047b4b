"""Distortion ladders: every encode is repeatable byte for byte (the demo's figures depend on it)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from vqstack.extract.ffmpeg_bin import ffmpeg_exe
from vqstack.ladders import LADDERS, make_pristine, make_step


def test_ladder_steps_are_byte_identical_across_encodes(tmp_path: Path) -> None:
    exe = ffmpeg_exe(None)
    pristine = make_pristine(tmp_path / "p.mp4", "testsrc2=size=160x120:rate=25", seconds=1.0, exe=exe)
    for ladder in ("crf", "noise"):
        vf, crf = LADDERS[ladder][0]
        digests = {hashlib.sha256(make_step(pristine, tmp_path / f"{ladder}{i}.mp4", vf, crf, exe).read_bytes())
                   .hexdigest() for i in range(4)}
        assert len(digests) == 1, ladder
