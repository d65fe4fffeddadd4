"""Replica averaging: the mean of several learners' weights or states, and applying it late.

Data-parallel replicas each learn from their share of the stream; now and then their weights
are averaged and set back. These functions work on the nested dicts of
:meth:`OnlineGAN.get_weights` and :meth:`OnlineGAN.state_dict`.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

__all__ = ["average_weights", "average_states", "apply_average"]


def _mean(tensors: list[torch.Tensor]) -> torch.Tensor:
    first = tensors[0]
    if not first.is_floating_point():
        return first.clone()
    return torch.stack([t.to(first.device) for t in tensors]).mean(0).to(first.dtype)


def _average_tree(items: list[Any]) -> Any:
    first = items[0]
    if isinstance(first, torch.Tensor):
        return _mean(items)
    if isinstance(first, dict):
        return {k: _average_tree([it[k] for it in items]) for k in first}
    if isinstance(first, (list, tuple)):
        return type(first)(_average_tree(list(group)) for group in zip(*items, strict=True))
    return first


def average_weights(weights: list[dict[str, Any]]) -> dict[str, Any]:
    """The element-wise mean of several replicas' :meth:`OnlineGAN.get_weights`.

    Examples
    --------
    >>> a, b = OnlineGAN(3, seed=0), OnlineGAN(3, seed=1)
    >>> avg = average_weights([a.get_weights(), b.get_weights()])
    >>> a.set_weights(avg); b.set_weights(avg)
    >>> bool(torch.equal(a.estimate(), b.estimate()))
    True
    """
    if not weights:
        raise ValueError("average_weights needs at least one set of weights")
    return _average_tree(list(weights))


def apply_average(current: Any, sent: Any, average: Any) -> Any:
    """``current + (average - sent)``, leaf by leaf, over nested dicts of tensors.

    A replica's weights were read (``sent``) before the average was computed; the steps it
    took since then are kept, and only the averaging's correction is applied. Replacing the
    weights outright would throw those steps away.

    Examples
    --------
    >>> apply_average({"w": torch.tensor([2.0])}, {"w": torch.tensor([1.0])},
    ...               {"w": torch.tensor([1.5])})
    {'w': tensor([2.5000])}
    """
    if isinstance(current, dict):
        missing = set(current) ^ set(sent) | set(current) ^ set(average)
        if missing:
            raise ValueError(f"weights differ in their keys: {sorted(map(str, missing))}")
        return {key: apply_average(current[key], sent[key], average[key]) for key in current}
    return current + (average - sent)


def average_states(states: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge several replicas' :meth:`OnlineGAN.state_dict` into one.

    Model weights, optimizer moments and the reported average are averaged; the counting
    baselines are summed (they saw disjoint data) and so are ``samples_seen``; ``step`` and
    the drift detections are the largest (replicas see the same drifts in their shares of
    the stream); the schedule, the drift response, the detector's averages and the random
    state come from the first replica.

    Examples
    --------
    >>> a, b = OnlineGAN(3, seed=0), OnlineGAN(3, seed=1)
    >>> a.count_many(torch.tensor([0, 1])); b.count_many(torch.tensor([2]))
    >>> merged = OnlineGAN(3)
    >>> merged.load_state_dict(average_states([a.state_dict(), b.state_dict()]))
    >>> merged.samples_seen, merged.baseline.counts.tolist()
    (3, [1.0, 1.0, 1.0])
    """
    if not states:
        raise ValueError("average_states needs at least one state")
    first = states[0]
    for other in states[1:]:
        if other["config"]["num_categories"] != first["config"]["num_categories"]:
            raise ValueError("cannot average states with different num_categories")
    merged = copy.deepcopy(first)
    for key in ("generator", "discriminator", "estimate_ema", "g_optimizer", "d_optimizer"):
        merged[key] = _average_tree([s[key] for s in states])
    merged["step"] = max(int(s["step"]) for s in states)
    merged["samples_seen"] = sum(int(s["samples_seen"]) for s in states)
    merged["detector"]["detections"] = max(int(s["detector"]["detections"]) for s in states)
    baseline = merged["baseline"]
    baseline["counts"] = torch.stack([s["baseline"]["counts"] for s in states]).sum(0)
    baseline["samples_seen"] = sum(int(s["baseline"]["samples_seen"]) for s in states)
    return merged
