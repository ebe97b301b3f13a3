"""Offline schedules: LRS-OPT (Problem 1 solved by projected gradient descent) and the
hand-designed baselines of Section 6 (exponential decay, staircase, SGDR).

LRS-OPT treats the whole schedule ``η ∈ R^T_{≥0}`` as the hyperparameter of Problem (1),

    min_{η ≥ 0} f_T(η) = E(θ(w_T(η))),

and runs ``η ← max(η − γ ∇f_T(η), 0)`` with the exact hypergradient of Eq. 4 (reverse mode).
Every iteration restarts from the same initial weights ``w_0``; minibatches may be drawn
afresh per iteration (Section 5 does, so that the schedule does not fit one sample path).
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from hypergrad.dynamics import Dynamics, Params, State
from hypergrad.hypergradient import check_schedule, hypergradient

__all__ = ["LrsOptResult", "lrs_opt", "constant", "exponential_decay", "staircase", "sgdr",
           "run_metadata", "atomic_write_json"]


@dataclass
class LrsOptResult:
    """The schedule after ``iterations`` steps, and ``f_T`` before each step (``history``)."""

    lrs: list[float]
    history: list[float]
    iterations: int
    settings: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def schedule(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        return torch.tensor(self.lrs, dtype=dtype)

    @classmethod
    def load(cls, path: str | os.PathLike) -> LrsOptResult:
        with open(path) as f:
            return cls(**json.load(f))

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, asdict(self))


def atomic_write_json(path: str | os.PathLike, obj: object) -> None:
    """Write JSON to a temporary file beside ``path``, then rename: never a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_metadata(wall_time: float | None = None) -> dict:
    """Commit, hardware and versions, saved beside every long run's results."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    meta = {"commit": commit, "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if wall_time is not None:
        meta["wall_time_s"] = round(wall_time, 3)
    return meta


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
        :class:`LrsOptResult` with the final schedule and ``f_T`` per iteration.
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
    elapsed = result.meta.get("wall_time_s", 0.0)
    start = time.perf_counter()
    bar = _progress(range(result.iterations, iterations), progress, result.iterations, iterations)
    for it in bar:
        its_batches = batches(it) if callable(batches) else batches
        try:
            value, grad = hypergradient(dyn, params, lrs, its_batches, objective,
                                        checkpoint_every=checkpoint_every)
            if not torch.isfinite(grad).all():
                raise FloatingPointError(f"LRS-OPT iteration {it}: the hypergradient is not finite")
        except FloatingPointError:          # DivergenceError too: keep what was done, then raise
            if save_path is not None and result.iterations:
                result.meta = run_metadata(elapsed + time.perf_counter() - start)
                result.save(save_path)
            raise
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
    result.meta = run_metadata(elapsed + time.perf_counter() - start)
    if save_path is not None:
        result.save(save_path)
    return result


def _progress(it, enabled: bool, initial: int, total: int):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, initial=initial, total=total, desc="LRS-OPT", leave=False)


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
