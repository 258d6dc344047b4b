"""Shared torch plumbing for deep extractors: device, AMP, strict weight loading, batching.

Why one module: every seed project hard-codes ``.cuda()`` and loads weights with ``strict=False``;
here a device string is resolved once, autocast is used only on CUDA (bf16 if supported, else fp16)
unless asked for on CPU, and checkpoints load with strict key matching and an error that lists the
missing and unexpected keys.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from vqstack.errors import WeightsError


def resolve_device(device: str | None) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error."""
    name = (device or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        from vqstack.errors import ConfigError

        raise ConfigError("--device cuda: no CUDA device is available here (use --device cpu or auto)")
    return torch.device(name)


def autocast(device: torch.device, mode: str = "auto") -> contextlib.AbstractContextManager[Any]:
    """Mixed precision: ``auto`` = bf16/fp16 on CUDA, fp32 on CPU; ``bf16``/``fp16``/``fp32`` force it."""
    if mode == "fp32" or (mode == "auto" and device.type != "cuda"):
        return contextlib.nullcontext()
    if mode == "auto":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[mode]
    return torch.autocast(device_type=device.type, dtype=dtype)


def load_checkpoint(path: str | Path) -> Mapping[str, Any]:
    """Load a checkpoint file on the CPU (never executing pickled code beyond tensors when possible)."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # old checkpoints pickle numpy scalars etc.; fall back knowingly
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:
            reason = f"{exc.__class__.__name__}: {exc}"
            raise WeightsError(f"{path}: cannot be read as a torch checkpoint ({reason})") from exc
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: expected a state dict (a mapping of tensors), got {type(obj).__name__}")
    return obj


def load_state_strict(module: torch.nn.Module, state: Mapping[str, Any], source: str | Path) -> None:
    """``load_state_dict(strict=True)`` with an error naming the file and the mismatching keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shape:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if shape:
            parts.append(f"shape mismatch: {show(shape)}")
        raise WeightsError(f"{source}: weights do not match the model ({'; '.join(parts)})")
    module.load_state_dict(state, strict=True)


def resize_uint8(frames: Any, size: tuple[int, int], *, mode: str = "bilinear", antialias: bool = False) -> Any:
    """Resize uint8 ``[H, W, 3]`` or ``[N, H, W, 3]`` frames to ``size`` = (h, w); uint8 out, same rank.

    Why torch: its uint8 kernels (bilinear and bicubic, with or without antialiasing) are 7-8x
    faster than PIL on 1080p frames and, antialiased, within one grey level of PIL on about 0.2%
    of pixels. ``align_corners=False`` throughout (PIL's and torchvision's pixel-centre convention).
    """
    import numpy as np

    frames = np.asarray(frames)
    if frames.shape[-3:-1] == tuple(size):
        return np.ascontiguousarray(frames)
    single = frames.ndim == 3
    src = torch.from_numpy(frames if frames.flags.writeable else frames.copy())
    src = src[None] if single else src
    out = torch.nn.functional.interpolate(src.permute(0, 3, 1, 2), size=tuple(size), mode=mode,
                                          align_corners=False, antialias=antialias)
    out = out.permute(0, 2, 3, 1).contiguous().numpy()
    return out[0] if single else out


def batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, max(1, size)):
        yield slice(start, min(n, start + size))


def unit_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` tensor -> contiguous float ``[N, 3, H, W]`` in [0, 1], on the tensor's device."""
    return frames.permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def torch_versions() -> dict[str, str]:
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__}


def fold_batch_norms(module: torch.nn.Module) -> int:
    """Fold every eval-mode ``BatchNorm3d``/``2d`` that directly follows a convolution into it (inference only).

    Why: at inference a batch norm is a per-channel affine map, so it can live in the preceding
    convolution's weights and bias; that removes one pass over every activation tensor (about 7%
    of SlowFast's CPU time). The folded network computes the same function up to float rounding.
    Call it after loading the weights (the state-dict keys change). Returns how many were folded.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    pairs = ((torch.nn.Conv3d, torch.nn.BatchNorm3d), (torch.nn.Conv2d, torch.nn.BatchNorm2d))
    folded = 0
    for parent in list(module.modules()):
        children = list(parent.named_children())
        for (conv_name, conv), (norm_name, norm) in itertools.pairwise(children):
            if any(isinstance(conv, c) and isinstance(norm, n) for c, n in pairs) and not norm.training:
                setattr(parent, conv_name, fuse_conv_bn_eval(conv, norm))
                setattr(parent, norm_name, torch.nn.Identity())
                folded += 1
    return folded
