"""Start a narrower DeepLabV3+ head from a wider export by keeping its strongest channel groups.

A cheaper model call (issue 14) comes from a narrower ASPP and decoder (``aspp_filters``,
``decoder_filters``). Trained from scratch such a head loses what the served model learned; started
from it, each narrowed block keeps whole GroupNorm groups of the export, those whose GroupNorm scales
are largest in sum of ``|gamma|`` (the "network slimming" criterion: a group with small scales
contributes little after its ReLU). Keeping whole groups keeps each kept channel's normalisation
statistics, and every layer that reads a narrowed block (a concat, a depthwise conv, the logits)
takes the same channels, offset by where the block sits in its concat. If the dropped groups of the
export are exactly zero the narrow model computes the export's function (tested).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import numpy as np

from roadseg.trainer.model import HEAD_GROUP_CHANNELS

#: Blocks whose outputs a narrower head may drop, with the blocks their input concatenates, in order.
#: The ASPP branches read the backbone (never narrowed); ``decoder_low`` keeps its 48 channels.
_DECODER_INPUTS: dict[str, tuple[str, ...]] = {
    "decoder_sep1": ("aspp_out", "decoder_low"),
    "decoder_sep2": ("decoder_sep1",),
    "logits_stride4": ("decoder_sep2",),
    "decoder_s2_reduce": ("decoder_sep2",),
}

Shapes = Mapping[str, tuple[int, ...]]


def _aspp_branches(names: Iterable[str]) -> tuple[str, ...]:
    """The ASPP's concat order: 1x1, the atrous branches by rate (as built), image pooling."""
    rates = sorted(int(m.group(1)) for n in names if (m := re.fullmatch(r"aspp_r(\d+)_conv/kernel", n)))
    return ("aspp_1x1", *(f"aspp_r{r}" for r in rates), "aspp_pool_proj")


def _strongest_groups(gamma: np.ndarray, keep: int) -> np.ndarray:
    """Indices of the ``keep`` channels in the strongest whole groups, in their original order."""
    width = gamma.shape[0]
    group = HEAD_GROUP_CHANNELS
    if width % group or keep % group:
        return np.arange(keep)  # not group-aligned: the leading channels
    strength = np.abs(gamma).reshape(-1, group).sum(axis=1)
    groups = np.sort(np.argsort(-strength, kind="stable")[: keep // group])
    return (groups[:, None] * group + np.arange(group)).ravel()


def head_indices(source: Mapping[str, np.ndarray], target: Shapes) -> dict[str, tuple[np.ndarray, ...]]:
    """Per head variable of ``target`` narrower than in ``source``: the source index on every axis.

    ``source`` maps ``layer/weight`` names to the export's values, ``target`` the same names to the
    new model's shapes. Only variables whose kept channels differ from "all" are returned.
    """
    inputs = {"aspp_out": _aspp_branches(source), **_DECODER_INPUTS}
    kept: dict[str, np.ndarray] = {}
    for block in (*inputs["aspp_out"], "aspp_out", "decoder_low", "decoder_sep1", "decoder_sep2"):
        name = f"{block}_conv/kernel"
        if name in source and name in target:
            kept[block] = _strongest_groups(np.asarray(source[f"{block}_gn/gamma"]), target[name][3])

    def read_by(block: str) -> np.ndarray | None:
        """The source channels of ``block``'s input concat that the target keeps."""
        if block not in inputs or not all(p in kept for p in inputs[block]):
            return None
        offset, parts = 0, []
        for producer in inputs[block]:
            parts.append(offset + kept[producer])
            offset += source[f"{producer}_conv/kernel"].shape[3]
        return np.concatenate(parts)

    plan: dict[str, tuple[np.ndarray, ...]] = {}
    for block in {*kept, *inputs}:
        into, out = read_by(block), kept.get(block)
        axes = {  # variable -> which axes are narrowed (None = all)
            f"{block}_conv/kernel": (None, None, into, out),
            f"{block}_gn/gamma": (out,),
            f"{block}_gn/beta": (out,),
            f"{block}_dw/kernel": (None, None, into, None),
            f"{block}_dw_gn/gamma": (into,),
            f"{block}_dw_gn/beta": (into,),
            f"{block}/kernel": (None, None, into, None),  # logits_stride4
        }
        for name, chosen in axes.items():
            if name not in source or name not in target:
                continue
            shape = source[name].shape
            index = tuple(np.arange(size) if c is None else c for size, c in zip(shape, chosen, strict=True))
            if tuple(len(i) for i in index) != tuple(shape):
                plan[name] = index
    return plan
