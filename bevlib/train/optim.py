"""Optimisers and learning-rate schedules from a :class:`TrainConfig` (the papers use different ones)."""
from __future__ import annotations

import math

import torch

from .config import TrainConfig


def build_optimizer(param_groups, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD over ``param_groups`` (a module's parameters, or a list of dicts with
    ``params`` and an optional ``lr_mult``, e.g. BEVFormer's backbone x 0.1; a group's
    ``weight_decay`` overrides the config's).

    Raises: ValueError for an unknown optimiser (also checked by TrainConfig).
    """
    if isinstance(param_groups, torch.nn.Module):
        param_groups = param_groups.parameters()
    groups = list(param_groups)
    if groups and isinstance(groups[0], dict):
        groups = [dict(g, lr=cfg.lr * g.pop("lr_mult", 1.0)) if "lr_mult" in g else dict(g) for g in groups]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def decay_groups(named_parameters, exclude: tuple[str, ...] = ()) -> list[dict]:
    """Two parameter groups as DINO / timm build them: weight decay on the rest, none on biases, 1-D
    (norm) parameters and names containing any of ``exclude`` (e.g. ``"prompts."``); frozen parameters
    (``requires_grad=False``) are left out.

    Args: named_parameters: iterable of (name, parameter), e.g. ``module.named_parameters()``.
    Returns: ``[{"params": decayed}, {"params": not decayed, "weight_decay": 0.0}]`` for :func:`build_optimizer`.
    """
    decay, no_decay = [], []
    for name, p in named_parameters:
        if p.requires_grad:
            skip = name.endswith(".bias") or p.ndim == 1 or any(e in name for e in exclude)
            (no_decay if skip else decay).append(p)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine_factor(step: int, total: int, warmup: int, warmup_ratio: float, min_ratio: float) -> float:
    """lr / base lr at optimiser ``step`` (0-based) of ``total``: linear from ``warmup_ratio`` to 1
    over ``warmup`` steps (mmcv's linear warm-up), then cosine from 1 to ``min_ratio`` over the
    remaining steps (BEVFormer: ``CosineAnnealing``, ``min_lr_ratio=1e-3``)."""
    if step < warmup:
        return warmup_ratio + (1.0 - warmup_ratio) * step / warmup
    span = max(1, total - warmup)
    t = min(1.0, (step - warmup) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def weight_decay_at(step: int, total: int, start: float, end: float) -> float:
    """Weight decay for optimiser ``step`` (0-based, set before that step) of ``total``: DINO's
    ``cosine_scheduler`` (Caron et al. 2021, ``utils.cosine_scheduler``, no warm-up), used by
    wozniak2025 (Table 5) for wd 0.04 -> 0.4: ``end + (start - end)(1 + cos(pi step / total)) / 2``;
    the last step (total - 1) approaches ``end`` without reaching it, as in DINO. Steps past the
    end keep the last value.

    Raises: ValueError if ``total`` < 1 or ``step`` < 0.
    """
    if total < 1 or step < 0:
        raise ValueError(f"weight_decay_at needs total >= 1 and step >= 0, got step={step}, total={total}")
    i = min(step, total - 1)
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * i / total))


class WeightDecaySchedule:
    """Sets the weight decay of an optimiser's decayed groups from the step alone (nothing stored, so a
    resumed or rolled-back run gets the same values): each group whose weight decay is > 0 when this
    object is built follows :func:`weight_decay_at` from that value to ``end``; the others stay as they are.

    Args: opt: the optimiser, just built (before any checkpoint is restored into it); total: optimiser
        steps of the run; end: ``TrainConfig.weight_decay_end``.
    """

    def __init__(self, opt: torch.optim.Optimizer, total: int, end: float):
        self.opt, self.total, self.end = opt, total, float(end)
        self.start = [float(g.get("weight_decay", 0.0)) for g in opt.param_groups]

    def apply(self, step: int) -> None:
        """Set the decays for optimiser step ``step`` (0-based: the number of steps already taken)."""
        for g, start in zip(self.opt.param_groups, self.start):
            if start > 0:
                g["weight_decay"] = weight_decay_at(step, self.total, start, self.end)


def build_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """The per-step schedule of ``cfg.schedule`` over ``total_steps`` optimiser steps."""
    if cfg.schedule == "onecycle":
        max_lr = [g["lr"] for g in opt.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr if len(max_lr) > 1 else cfg.lr,
                                                   total_steps=total_steps, pct_start=cfg.pct_start,
                                                   anneal_strategy="cos")
    if cfg.schedule == "warmup_cosine":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine_factor(
            s, total_steps, cfg.warmup_steps, cfg.warmup_ratio, cfg.min_lr_ratio))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
