"""Converters between the official FAST-VQA / FasterVQA / DOVER / DOVER-Mobile checkpoints and our modules.

Official layouts (read from ``fastvqa/models/evaluator.py`` ``DiViDeAddEvaluator``,
``dover/models/evaluator.py`` ``DOVER``, their ``swin_backbone.py`` / ``conv_backbone.py`` /
``head.py``, and the loaders ``vqa.py``, ``new_test.py``, ``evaluate_one_video.py``):

* ``FAST_VQA_B_1_4.pth`` and ``FAST_VQA_3D_1_1.pth`` (FasterVQA): ``{"state_dict": ...,
  "validation_results": ...}``; keys ``fragments_backbone.*`` (Swin-T GRPB, 193 keys) and
  ``vqa_head.fc_hid.{weight,bias}``, ``vqa_head.fc_last.{weight,bias}``.
* ``DOVER.pth``: the bare state dict; ``technical_backbone.*`` (Swin-T GRPB),
  ``aesthetic_backbone.*`` (inflated ConvNeXt-T), ``technical_head.*``, ``aesthetic_head.*``.
* ``DOVER-Mobile.pth``: the bare state dict; both backbones ConvNeXt-V2-femto 3-D, each with an
  unused ImageNet ``head.{weight,bias}`` (``[1000, 384]``, ``[1000]``), dropped here.

Inside the Swin backbone the names are upstream's (``patch_embed.proj``, ``layers.i.blocks.j.
{norm1,attn.qkv,attn.proj,attn.relative_position_bias_table,attn.fragment_position_bias_table,
attn.relative_position_index,norm2}``, ``layers.i.downsample.{reduction,norm}``, ``norm``) except
the MLP, which torchvision's block names ``mlp.0`` / ``mlp.3`` for upstream's ``mlp.fc1`` /
``mlp.fc2``. ConvNeXt and head names are unchanged. Every key of a file must be claimed by one of
these rules (else :class:`~vqstack.errors.WeightsError`), and the result is loaded strictly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from vqstack.errors import WeightsError

# Official top-level prefix -> ours, per checkpoint format.
PREFIXES: dict[str, dict[str, str]] = {
    "fast-vqa-b": {"fragments_backbone.": "technical_backbone.", "vqa_head.": "technical_head."},
    "fastervqa": {"fragments_backbone.": "technical_backbone.", "vqa_head.": "technical_head."},
    "dover": {p: p for p in ("technical_backbone.", "aesthetic_backbone.", "technical_head.", "aesthetic_head.")},
    "dover-mobile": {p: p for p in ("technical_backbone.", "aesthetic_backbone.", "technical_head.",
                                    "aesthetic_head.")},
}

# Official prefixes whose backbone is the Swin (MLP names differ from torchvision's).
SWIN_PREFIXES: dict[str, tuple[str, ...]] = {
    "fast-vqa-b": ("fragments_backbone.",),
    "fastervqa": ("fragments_backbone.",),
    "dover": ("technical_backbone.",),
    "dover-mobile": (),
}

# Official keys that our modules do not carry (unused by upstream's forward too), with their shapes.
UNUSED: dict[str, dict[str, tuple[int, ...]]] = {
    "fast-vqa-b": {},
    "fastervqa": {},
    "dover": {},
    "dover-mobile": {"technical_backbone.head.weight": (1000, 384), "technical_backbone.head.bias": (1000,),
                     "aesthetic_backbone.head.weight": (1000, 384), "aesthetic_backbone.head.bias": (1000,)},
}

# Formats saved as {"state_dict": ..., "validation_results": ...} by upstream's training script.
WRAPPED = ("fast-vqa-b", "fastervqa")

_MLP_OFFICIAL = re.compile(r"\.mlp\.fc([12])\.")
_MLP_OURS = re.compile(r"\.mlp\.([03])\.")


def unwrap(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The state dict inside a checkpoint (``obj["state_dict"]`` when present, else ``obj``)."""
    inner = obj.get("state_dict") if isinstance(obj, Mapping) else None
    return inner if isinstance(inner, Mapping) else obj


def official_to_ours(obj: Mapping[str, Any], model: str, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Map an official checkpoint (wrapped or bare) to our parameter names; every key must be claimed."""
    if model not in PREFIXES:
        raise ValueError(f"unknown checkpoint format '{model}'; expected one of {', '.join(PREFIXES)}")
    state = unwrap(obj)
    prefixes, swin, unused = PREFIXES[model], SWIN_PREFIXES[model], UNUSED[model]
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        if key in unused:
            continue
        prefix = next((p for p in prefixes if key.startswith(p)), None)
        if prefix is None or not isinstance(value, torch.Tensor):
            unknown.append(key)
            continue
        rest = key[len(prefix):]
        if prefix in swin:
            rest = _MLP_OFFICIAL.sub(lambda m: ".mlp.0." if m.group(1) == "1" else ".mlp.3.", "." + rest)[1:]
        out[prefixes[prefix] + rest] = value
    if unknown:
        shown = ", ".join(unknown[:6]) + (f" ... ({len(unknown)} in all)" if len(unknown) > 6 else "")
        hint = _guess_format(state)
        looks = f" (this looks like a {' / '.join(hint)} checkpoint)" if hint and model not in hint else ""
        raise WeightsError(f"{source}: keys not in the official {model} layout: {shown}{looks}")
    return out


def ours_to_official(state: Mapping[str, torch.Tensor], model: str, *, fill_unused: bool = True,
                     wrap: bool | None = None) -> dict[str, Any]:
    """Inverse of :func:`official_to_ours`: our state dict in the official layout.

    ``fill_unused`` adds zero tensors for official keys we drop (DOVER-Mobile's ImageNet heads) so
    upstream's strict ``load_state_dict`` accepts the result; ``wrap`` (default: as upstream saves
    that format) nests it under ``"state_dict"``.
    """
    if model not in PREFIXES:
        raise ValueError(f"unknown checkpoint format '{model}'; expected one of {', '.join(PREFIXES)}")
    inverse = {ours: official for official, ours in PREFIXES[model].items()}
    swin = SWIN_PREFIXES[model]
    out: dict[str, Any] = {}
    for key, value in state.items():
        prefix = next((p for p in inverse if key.startswith(p)), None)
        if prefix is None:
            raise ValueError(f"key '{key}' has no official counterpart in the {model} layout")
        official = inverse[prefix]
        rest = key[len(prefix):]
        if official in swin:
            rest = _MLP_OURS.sub(lambda m: ".mlp.fc1." if m.group(1) == "0" else ".mlp.fc2.", "." + rest)[1:]
        out[official + rest] = value
    if fill_unused:
        for key, shape in UNUSED[model].items():
            out[key] = torch.zeros(shape)
    if wrap if wrap is not None else model in WRAPPED:
        return {"state_dict": out}
    return out


def _guess_format(state: Mapping[str, Any]) -> tuple[str, ...]:
    """Which formats a state dict looks like (for error messages only)."""
    keys = list(state)
    if any(k.startswith("fragments_backbone.") for k in keys):
        return ("fast-vqa-b", "fastervqa")
    if any(k.startswith("technical_backbone.stages.") for k in keys):
        return ("dover-mobile",)
    if any(k.startswith("technical_backbone.layers.") for k in keys):
        return ("dover",)
    return ()
