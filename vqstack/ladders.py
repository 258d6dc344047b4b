"""Distortion ladders: pristine clips damaged in increasing steps, and their VMAF.

Why: a no-reference model must at least rank one source's versions in the order of their damage.
The demo builds ladders from ffmpeg's built-in (lavfi) sources, so it needs no data and no
download; benchmarks can build them from real clips. VMAF (full reference, libvmaf in the ffmpeg
that imageio-ffmpeg ships) gives each version a reference score to learn from and compare with.
"""

from __future__ import annotations

import csv
import json
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vqstack.extract.ffmpeg_bin import ffmpeg_exe

# Each ladder: (name, ffmpeg video filter or None, x264 CRF) per step, mildest first.
LADDERS: dict[str, list[tuple[str | None, int]]] = {
    "crf": [(None, 30), (None, 38), (None, 44), (None, 51)],
    "scale": [(f"scale=iw/{f}:ih/{f}:flags=bicubic,scale={{w}}:{{h}}:flags=bicubic", 12) for f in (2, 3, 4, 8)],
    "blur": [(f"gblur=sigma={s}", 12) for s in (0.8, 1.6, 3.2, 6.4)],
    "noise": [(f"noise=alls={n}:allf=t", 12) for n in (6, 14, 28, 50)],
}

def _x264(crf: int) -> list[str]:
    """The ladders' x264 output options. One thread: with ffmpeg's default threading, re-encoding the same
    clip gave different bytes in 1 of 6 runs here (and so different VMAF and demo numbers from run to run);
    the ladders' parallelism comes from encoding several steps at once instead."""
    return ["-c:v", "libx264", "-threads", "1", "-filter_threads", "1", "-preset", "veryfast", "-crf", str(crf),
            "-pix_fmt", "yuv420p"]


# Demo sources: pans over pictures — a public-domain photo of Grace Hopper (US Navy) and a shaded
# elevation map that matplotlib ships, the two photos that scikit-learn ships (a Chinese temple, a
# flower), two seeded 1/f ("natural-scene-like") textures — plus two ffmpeg lavfi sources with fine
# texture and motion. Eight sources let the demo hold one out and still train on seven. Small sizes
# keep it fast. Rule for a source: its pristine clip must not be upscaled by 2x or more (the scale
# ladder's first step), or it already carries the damage that VMAF, comparing it with itself, calls
# perfect; matplotlib's topobathy map (a 91x120 grid, 6x upscaled) was a source until nss 3 and broke it.
LAVFI_SOURCES: dict[str, str] = {
    "testsrc2": "testsrc2=size={w}x{h}:rate={r}",
    "mandelbrot": "mandelbrot=size={w}x{h}:rate={r}",
}
PICTURE_SOURCES = ("hopper", "jacksboro", "china", "flower", "clouds", "meadow")


def _shaded(elevation: Any, cmap: str) -> Any:
    import matplotlib
    from matplotlib.colors import LightSource

    rgb = LightSource(azdeg=315, altdeg=45).shade(elevation.astype(float), cmap=matplotlib.colormaps[cmap],
                                                  vert_exag=0.05, blend_mode="soft")
    return (rgb[..., :3] * 255).round().astype("uint8")


def _pink_noise(seed: int, size: tuple[int, int], channels: int) -> Any:
    """A 1/f amplitude-spectrum random field, the power law of natural images, in [0, 1]."""
    import numpy as np

    rng = np.random.default_rng(seed)
    h, w = size
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    amp = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / max(h, w))
    out = []
    for _ in range(channels):
        phase = np.exp(2j * np.pi * rng.random((h, w)))
        field = np.real(np.fft.ifft2(amp * phase))
        out.append((field - field.min()) / (np.ptp(field) + 1e-12))
    return np.stack(out, axis=-1)


def _render_picture(name: str, out: Path) -> Path:
    """Write a demo picture (PNG) from matplotlib's bundled sample data or a seeded texture."""
    import matplotlib
    import matplotlib.cbook as cbook
    import numpy as np
    from PIL import Image

    if name == "hopper":  # photos: kept at their own size (the pan scales them to twice the frame width)
        with cbook.get_sample_data("grace_hopper.jpg") as fh, Image.open(fh) as img:
            img.convert("RGB").save(out)
        return out
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        Image.fromarray(load_sample_image(f"{name}.jpg")).save(out)
        return out
    if name == "jacksboro":  # a 344x403 elevation grid
        data = cbook.get_sample_data("jacksboro_fault_dem.npz")
        rgb = _shaded(np.asarray(data["elevation"]), "gist_earth")
    elif name == "clouds":
        field = _pink_noise(11, (600, 720), 1)[..., 0]
        rgb = (matplotlib.colormaps["Blues_r"](field)[..., :3] * 255).astype("uint8")
    else:  # meadow: independent 1/f colour channels, greenish
        field = _pink_noise(23, (600, 720), 3) * np.array([0.55, 0.9, 0.45])
        rgb = (field * 255).astype("uint8")
    Image.fromarray(rgb).resize((720, 600), Image.Resampling.BICUBIC).save(out)
    return out


def _pan_filter(w: int, h: int, seconds: float) -> str:
    """Scale the picture so it is larger than the frame, then pan diagonally across it."""
    return (f"scale={2 * w}:-2:flags=lanczos,crop={w}:{h}:x='(iw-{w})*t/{seconds:g}':"
            f"y='(ih-{h})*t/{seconds:g}*0.6',format=yuv420p")


@dataclass(frozen=True)
class LadderVideo:
    path: str
    source: str
    ladder: str
    level: int  # 0 = pristine, higher = more damage
    vmaf: float | None = None


def _run(args: list[str]) -> None:
    proc = subprocess.run(args, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise RuntimeError(f"ffmpeg failed: {tail}")


def make_pristine(out: Path, lavfi: str, *, seconds: float, exe: str) -> Path:
    _run([exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", lavfi,
          "-t", str(seconds), *_x264(8), str(out)])
    return out


def make_pan(out: Path, picture: Path, *, size: tuple[int, int], rate: int, seconds: float, exe: str) -> Path:
    w, h = size
    _run([exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-loop", "1", "-framerate", str(rate),
          "-i", str(picture), "-t", str(seconds), "-vf", _pan_filter(w, h, seconds), *_x264(8), str(out)])
    return out


def make_step(pristine: Path, out: Path, vf: str | None, crf: int, exe: str) -> Path:
    """Encode one ladder step; ``{w}``/``{h}`` in the filter become the pristine clip's size."""
    args = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(pristine)]
    if vf:
        if "{w}" in vf:
            from vqstack.extract.probe import probe

            info = probe(pristine)
            vf = vf.replace("{w}", str(info.width)).replace("{h}", str(info.height))
        args += ["-vf", vf]
    args += [*_x264(crf), str(out)]
    _run(args)
    return out


def vmaf(distorted: Path, reference: Path, exe: str) -> float:
    """Mean VMAF (default model) of ``distorted`` against ``reference`` (same size and rate)."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "vmaf.json"
        _run([exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(distorted), "-i", str(reference),
              "-lavfi", f"[0:v][1:v]libvmaf=log_fmt=json:log_path={log.as_posix()}:n_threads=1", "-f", "null", "-"])
        data = json.loads(log.read_text())
    return float(data["pooled_metrics"]["vmaf"]["mean"])


def build_ladders(
    out_dir: Path,
    sources: dict[str, Path] | None = None,
    *,
    size: tuple[int, int] = (320, 240),
    rate: int = 25,
    seconds: float = 2.0,
    with_vmaf: bool = True,
    workers: int = 2,
    ffmpeg: str | None = None,
) -> list[LadderVideo]:
    """Build every ladder of every source into ``out_dir``; write ``ladders.csv``; return the rows.

    ``sources`` maps a name to a pristine clip; by default the demo sources (:data:`PICTURE_SOURCES`
    panned, :data:`LAVFI_SOURCES` rendered) are made at ``size``. Existing files are reused.
    """
    exe = ffmpeg_exe(ffmpeg)
    out_dir.mkdir(parents=True, exist_ok=True)
    pristine: dict[str, Path] = {}
    if sources is None:
        w, h = size
        for name in PICTURE_SOURCES:
            target = out_dir / f"{name}__pristine.mp4"
            if not target.exists():
                picture = _render_picture(name, out_dir / f"_{name}.png")
                make_pan(target, picture, size=size, rate=rate, seconds=seconds, exe=exe)
                picture.unlink()
            pristine[name] = target
        for name, pattern in LAVFI_SOURCES.items():
            target = out_dir / f"{name}__pristine.mp4"
            if not target.exists():
                make_pristine(target, pattern.format(w=w, h=h, r=rate), seconds=seconds, exe=exe)
            pristine[name] = target
    else:
        pristine = dict(sources)
    jobs: list[tuple[str, str, int, Path, str | None, int]] = []
    for name in pristine:
        for ladder, steps in LADDERS.items():
            for level, (vf, crf) in enumerate(steps, start=1):
                jobs.append((name, ladder, level, out_dir / f"{name}__{ladder}{level}.mp4", vf, crf))

    def build(job: tuple[str, str, int, Path, str | None, int]) -> LadderVideo:
        name, ladder, level, target, vf, crf = job
        if not target.exists():
            tmp = target.with_suffix(".tmp.mp4")
            make_step(pristine[name], tmp, vf, crf, exe)
            tmp.replace(target)
        score = vmaf(target, pristine[name], exe) if with_vmaf else None
        return LadderVideo(str(target), name, ladder, level, score)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        rows = list(pool.map(build, jobs))
    originals = [LadderVideo(str(p), n, "pristine", 0, 100.0 if with_vmaf else None) for n, p in pristine.items()]
    rows = originals + rows
    with (out_dir / "ladders.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        for row in rows:
            record = asdict(row)
            record["path"] = Path(row.path).name
            writer.writerow(record)
    return rows
