"""The hand-designed baseline schedules of Section 6: constant, exponential decay (ED),
staircase and SGDR, and :func:`fixed_schedule`, which stretches one stated in the epochs of
the paper's run over a run of any length. (LRS-OPT, the optimised schedule, is
:mod:`hypergrad.lrs_opt`.)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["constant", "exponential_decay", "staircase", "sgdr", "fixed_schedule",
           "FIXED_SCHEDULES"]


# ---------------------------------------------------------------------- baselines (Section 6)
def constant(T: int, lr: float) -> torch.Tensor:
    """``η_t = η_0`` for every step."""
    return torch.full((T,), float(lr), dtype=torch.float64)


def exponential_decay(T: int, lr: float, gamma: float, steps_per_epoch: int = 1) -> torch.Tensor:
    """``η_t = η_0 γ^{⌊t / steps_per_epoch⌋}`` (ED; the paper uses ``γ ≈ 0.99`` per epoch)."""
    t = torch.arange(T, dtype=torch.float64)
    return lr * gamma ** torch.div(t, steps_per_epoch, rounding_mode="floor")


def staircase(T: int, lr: float, every: int, factor: float = 0.1,
              steps_per_epoch: int = 1) -> torch.Tensor:
    """``η_t = η_0 · factor^{⌊epoch / every⌋}`` (the paper: ×0.1 every 60 epochs)."""
    epoch = torch.div(torch.arange(T), steps_per_epoch, rounding_mode="floor")
    return lr * factor ** torch.div(epoch, every, rounding_mode="floor").to(torch.float64)


def sgdr(T: int, lr: float, T_0: int, T_mult: int = 2, eta_min: float = 0.0,
         steps_per_epoch: int = 1) -> torch.Tensor:
    """SGDR (Loshchilov & Hutter, 2017): cosine annealing with warm restarts, per epoch.

    Equals ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(T_0, T_mult, eta_min)``
    stepped once per epoch (the paper: ``T_0 = 10``, ``T_mult = 2``).
    """
    out = []
    for t in range(T):
        e, Ti = t // steps_per_epoch, T_0
        while e >= Ti:
            e, Ti = e - Ti, Ti * T_mult
        out.append(eta_min + (lr - eta_min) * (1 + math.cos(math.pi * e / Ti)) / 2)
    return torch.tensor(out, dtype=torch.float64)


#: the baselines :func:`fixed_schedule` knows, by name
FIXED_SCHEDULES = ("exponential", "staircase", "sgdr")


def fixed_schedule(method: str, spec: dict, lr: float, total_steps: int,
                   schedule_epochs: int) -> torch.Tensor:
    """A Section 6 baseline over ``total_steps``, its epochs those of a ``schedule_epochs`` run.

    The paper states the baselines in epochs of a 200-epoch run (decay 0.99 per epoch, ×0.1
    every 60 epochs, SGDR with ``T_0 = 10``, ``T_mult = 2``). A shorter run keeps their shape:
    step ``t`` takes the value of paper epoch ``⌊t · schedule_epochs / total_steps⌋``.
    ``method`` is one of :data:`FIXED_SCHEDULES`; ``spec`` holds its parameters (``gamma``;
    ``every``, ``factor``; ``T_0``, ``T_mult``).
    """
    E = schedule_epochs
    makers: dict[str, Callable[[], torch.Tensor]] = {
        "exponential": lambda: exponential_decay(E, lr, spec["gamma"]),
        "staircase": lambda: staircase(E, lr, spec["every"], spec["factor"]),
        "sgdr": lambda: sgdr(E, lr, spec["T_0"], spec["T_mult"]),
    }
    if method not in makers:
        raise ValueError(f"{method!r} is not a fixed schedule (one of {FIXED_SCHEDULES})")
    per_epoch = makers[method]()
    idx = torch.div(torch.arange(total_steps) * E, total_steps, rounding_mode="floor")
    return per_epoch[idx.clamp(max=E - 1)]
