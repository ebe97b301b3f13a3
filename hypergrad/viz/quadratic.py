"""The noisy quadratic of chapter 4's worked example: the problem, a run's tangent, a figure.

The model is the noisy quadratic of Wu et al. (2018). The curvature is diagonal,
``H = diag(h)``; the training loss of step ``t`` is ``L_t(w) = ½ Σ_i h_i (w_i − y_{t,i})²``,
whose target ``y_t = w⋆ + σ ξ_t`` (``ξ_t`` standard normal) is drawn afresh at every step, as a
minibatch would be; the objective is ``E(w) = ½ Σ_i h_i (w_i − w⋆_i)²``.

* :func:`noisy_quadratic` builds the problem (:class:`NoisyQuadratic`): the minibatch of step
  ``t`` is its target ``y_t``;
* :func:`tangent_run` runs an online tuner on it and keeps what a
  :class:`~hypergrad.loop.History` does not: the iterate ``w_t`` and the tangent ``Z_t``;
* :func:`growth_rate` measures the factor by which a sequence grows per step;
* :func:`plot_measured_vs_predicted` draws measured values against a formula.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["NoisyQuadratic", "noisy_quadratic", "TangentRun", "tangent_run", "growth_rate",
           "plot_measured_vs_predicted"]


@dataclass(frozen=True)
class NoisyQuadratic:
    """A noisy quadratic: curvatures ``h``, minimiser ``w_star`` of ``E``, noise ``sigma``, the
    targets ``y_t`` of ``T`` steps (a ``(T, d)`` tensor, one row per step) and the start ``w0``."""

    h: torch.Tensor
    w_star: torch.Tensor
    sigma: float
    targets: torch.Tensor
    w0: torch.Tensor

    def loss(self, params: dict, target: torch.Tensor) -> torch.Tensor:
        """``L_t(w) = ½ Σ_i h_i (w_i − y_{t,i})²`` for the target ``y_t`` of step ``t``."""
        return 0.5 * (self.h * (params["w"] - target) ** 2).sum()

    def objective(self, params: dict) -> torch.Tensor:
        """``E(w) = ½ Σ_i h_i (w_i − w⋆_i)²``."""
        return 0.5 * (self.h * (params["w"] - self.w_star) ** 2).sum()

    @property
    def params0(self) -> dict:
        """The initial weights ``{"w": w_0}`` (a copy)."""
        return {"w": self.w0.clone()}

    @property
    def batches(self) -> list[torch.Tensor]:
        """The minibatches, which are the targets ``y_0, …, y_{T-1}``."""
        return list(self.targets)


def noisy_quadratic(h: Sequence[float], w_star: Sequence[float], w0: Sequence[float],
                    sigma: float, steps: int, seed: int = 0,
                    dtype: torch.dtype = torch.float64) -> NoisyQuadratic:
    """The noisy quadratic with curvatures ``h`` (all > 0), minimiser ``w_star``, start ``w0``
    and ``steps`` targets ``y_t = w_star + sigma ξ_t``, drawn from a generator seeded with
    ``seed``."""
    h_, ws_, w_ = (torch.as_tensor(v, dtype=dtype) for v in (h, w_star, w0))
    if not (h_.ndim == 1 and h_.shape == ws_.shape == w_.shape):
        raise ValueError(f"h, w_star and w0 must be vectors of one length, got shapes "
                         f"{tuple(h_.shape)}, {tuple(ws_.shape)}, {tuple(w_.shape)}")
    if not bool((h_ > 0).all()):
        raise ValueError(f"the curvatures must be positive, got {h_.tolist()}")
    if not (sigma >= 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma}")
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(steps, len(ws_), generator=gen, dtype=dtype)
    return NoisyQuadratic(h_, ws_, float(sigma), ws_ + sigma * noise, w_)


@dataclass(frozen=True)
class TangentRun:
    """A run of :func:`tangent_run` as float64 arrays: ``w`` and ``Z`` are ``(T+1, d)`` (rows
    ``t = 0 … T``); ``lr``, ``mu`` and ``delta`` hold ``η_t``, ``μ_t`` and ``Δ_t`` for
    ``t = 0 … T-1``."""

    w: np.ndarray
    Z: np.ndarray
    lr: np.ndarray
    mu: np.ndarray
    delta: np.ndarray


def tangent_run(tuner, prob: NoisyQuadratic, z0: Sequence[float] | None = None,
                steps: int | None = None) -> TangentRun:
    """Run ``tuner`` (a :class:`~hypergrad.online.Marthe`) on ``prob`` for ``steps`` steps
    (all its targets by default), recording ``w_t`` and the tangent ``Z_t`` at every step.

    ``z0`` replaces the initial tangent ``Z_0 = 0``: two runs that differ only there differ
    by the homogeneous part of the tangent's recursion.
    """
    steps = len(prob.targets) if steps is None else steps
    ostate = tuner.init(prob.params0)
    if z0 is not None:
        z = torch.as_tensor(z0, dtype=prob.w0.dtype).clone()
        ostate = ostate._replace(Z={"params": {"w": z}})
    ws, Zs, infos = [prob.w0.clone()], [ostate.Z["params"]["w"].clone()], []
    for t in range(steps):
        ostate, info = tuner.step(ostate, prob.targets[t], prob.objective)
        ws.append(ostate.state.w["params"]["w"].clone())
        Zs.append(ostate.Z["params"]["w"].clone())
        infos.append(info)

    def column(name):
        return np.array([float(getattr(i, name)) for i in infos])

    return TangentRun(torch.stack(ws).double().numpy(), torch.stack(Zs).double().numpy(),
                      column("lr"), column("mu"), column("hypergradient"))


def growth_rate(x: Sequence[float]) -> float:
    """The factor by which ``|x_t|`` grows per step, on average: the geometric mean of
    ``|x_{t+1} / x_t|`` over the sequence (it must have two or more non-zero entries)."""
    x = np.abs(np.asarray(x, dtype=float))
    if x.ndim != 1 or len(x) < 2 or not (x > 0).all():
        raise ValueError("growth_rate needs a 1-D sequence of two or more non-zero values")
    return float(np.exp(np.mean(np.diff(np.log(x)))))


def plot_measured_vs_predicted(ax, curves: Mapping[str, tuple], *, t0: int = 0,
                               logy: bool = False, colors: Sequence[str] | None = None,
                               xlabel: str = "step $t$", ylabel: str = "",
                               title: str | None = None, fontsize: float = 10):
    """For each ``label → (measured, predicted)``, the measured values as markers and the
    prediction as a line of the same colour, against ``t = t0, t0 + 1, …``; ``logy`` plots the
    absolute values on a log scale; ``colors`` gives one colour per curve (default ``C0``,
    ``C1``, …). The legend names each curve once, and every text is ``fontsize`` points."""
    colors = list(colors) if colors is not None else [f"C{k}" for k in range(len(curves))]
    if len(colors) < len(curves):
        raise ValueError(f"{len(curves)} curves need as many colours, got {len(colors)}")
    for color, (label, (measured, predicted)) in zip(colors[: len(curves)], curves.items(), strict=True):
        y, p = (np.asarray(v, dtype=float) for v in (measured, predicted))
        if logy:
            y, p = np.abs(y), np.abs(p)
        ax.plot(t0 + np.arange(len(p)), p, color=color, lw=1.2, label="_" + label)
        ax.plot(t0 + np.arange(len(y)), y, "o", color=color, ms=3.5, label=label)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel, fontsize=fontsize)
    ax.set_ylabel(ylabel, fontsize=fontsize)
    ax.tick_params(labelsize=fontsize)
    if title:
        ax.set_title(title, fontsize=fontsize)
    ax.legend(frameon=False, fontsize=fontsize)
    return ax
