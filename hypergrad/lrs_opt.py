"""LRS-OPT: Problem (1) solved by projected gradient descent on the whole schedule.

LRS-OPT treats the schedule ``η ∈ R^T_{≥0}`` as the hyperparameter of Problem (1),

    min_{η ≥ 0} f_T(η) = E(θ(w_T(η))),

and runs ``η ← max(η − γ ∇f_T(η), 0)`` with the exact hypergradient of Eq. 4 (reverse mode).
Every iteration restarts from the same initial weights ``w_0``; minibatches may be drawn
afresh per iteration (Section 5 does, so that the schedule does not fit one sample path).
A run that diverges is returned, not lost: its result says where (``diverged``) and keeps the
last schedule whose ``f_T`` was finite.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from hypergrad.dynamics import DivergenceError, Dynamics, Params, State
from hypergrad.hypergradient import check_schedule, hypergradient
from hypergrad.io import atomic_write_json, run_metadata

__all__ = ["LrsOptResult", "lrs_opt"]


@dataclass
class LrsOptResult:
    """The schedule after ``iterations`` steps, and ``f_T`` before each step (``history``).

    ``previous`` is the schedule whose ``f_T`` is ``history[-1]``. A run that diverged has
    ``diverged = {"iteration", "step", "message", "lrs"}`` (the schedule that diverged, at which
    inner step, and why), and ``lrs`` is then the last schedule whose ``f_T`` was finite.
    """

    lrs: list[float]
    history: list[float]
    iterations: int
    settings: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    previous: list[float] | None = None
    diverged: dict | None = None

    def schedule(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        return torch.tensor(self.lrs, dtype=dtype)

    @classmethod
    def load(cls, path: str | os.PathLike) -> LrsOptResult:
        with open(path) as f:
            return cls(**json.load(f))

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, asdict(self))


def lrs_opt(dyn: Dynamics, params: Params | State, lrs: torch.Tensor | Sequence[float], batches: Sequence | Callable[[int], Sequence],
            objective: Callable, iterations: int, step_size: float, *,
            max_lr: float | None = None, checkpoint_every: int | None = None,
            save_path: str | os.PathLike | None = None, save_every: int = 10,
            progress: bool = True, callback: Callable | None = None,
            settings: dict | None = None) -> LrsOptResult:
    """LRS-OPT: projected gradient descent on the schedule (Section 5).

    Args:
        dyn, params: the dynamics and the initial weights ``w_0`` (the same every iteration).
        lrs: the initial schedule (1-D, ``T`` entries, ``≥ 0``).
        batches: ``T`` minibatches, or ``iteration -> T minibatches`` for fresh ones per
            iteration.
        objective: ``E(params) -> scalar`` (``E(params, buffers)`` with buffers).
        iterations: hyper-iterations in total (a resumed run counts those already done).
        step_size: ``γ`` in ``η ← max(η − γ ∇f_T(η), 0)`` (clipped above at ``max_lr``).
        save_path: JSON file; saved every ``save_every`` iterations (atomically) and at the
            end. If it exists, the run *resumes* from it (same ``T`` and ``step_size``).
        callback: ``callback(iteration, lrs, value, grad)`` after each iteration.
        settings: extra settings saved with the result; a resumed file must match all of them
            (and ``T``, ``step_size``, ``max_lr``, the dynamics).

    Returns:
        :class:`LrsOptResult` with the final schedule and ``f_T`` per iteration. When an
        iteration diverges (a non-finite value, :class:`~hypergrad.dynamics.DivergenceError`),
        the run stops and returns (and saves) its result with ``diverged`` set and ``lrs`` the
        last schedule evaluated without diverging; resuming a diverged file returns it as is.
    """
    if iterations < 0 or not (step_size > 0) or not math.isfinite(step_size):
        raise ValueError("iterations must be >= 0 and step_size a positive finite number")
    like = next(iter((params.w["params"] if hasattr(params, "w") else params).values()))
    lrs = check_schedule(lrs, like=like).clone()
    T = len(lrs)
    settings = {"T": T, "step_size": step_size, "max_lr": max_lr, "dynamics": repr(dyn),
                **(settings or {})}
    result = LrsOptResult(lrs.tolist(), [], 0, settings)
    if save_path is not None and Path(save_path).exists():
        result = LrsOptResult.load(save_path)
        for key in settings:
            if result.settings.get(key) != settings[key]:
                raise ValueError(f"cannot resume {save_path}: it was run with {key}="
                                 f"{result.settings.get(key)!r}, not {settings[key]!r}")
        lrs = torch.tensor(result.lrs, dtype=lrs.dtype, device=lrs.device)
        if result.diverged is not None:
            return result
    elapsed = result.meta.get("wall_time_s", 0.0)
    start = time.perf_counter()
    bar = _progress(range(result.iterations, iterations), progress, result.iterations, iterations)
    for it in bar:
        its_batches = batches(it) if callable(batches) else batches
        try:
            value, grad = hypergradient(dyn, params, lrs, its_batches, objective,
                                        checkpoint_every=checkpoint_every)
            if not (torch.isfinite(grad).all() and torch.isfinite(value)):
                raise DivergenceError(-1, "the hypergradient is not finite", blowup=True)
        except DivergenceError as err:      # keep what was done, say where it diverged
            result.diverged = {"iteration": it, "step": err.step, "message": err.reason,
                               "lrs": result.lrs}
            result.lrs = result.previous if result.previous is not None else result.lrs
            break
        result.previous = result.lrs
        lrs = (lrs - step_size * grad).clamp(min=0.0, max=max_lr)
        result.history.append(float(value))
        result.iterations = it + 1
        result.lrs = lrs.tolist()
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(E=f"{float(value):.4f}")
        if callback is not None:
            callback(it, lrs, value, grad)
        if save_path is not None and (it + 1) % save_every == 0:
            result.meta = run_metadata(elapsed + time.perf_counter() - start)
            result.save(save_path)
    if hasattr(bar, "close"):
        bar.close()
    result.meta = run_metadata(elapsed + time.perf_counter() - start)
    if save_path is not None:
        result.save(save_path)
    return result


def _progress(it, enabled: bool, initial: int, total: int):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, initial=initial, total=total, desc="LRS-OPT", leave=False)
