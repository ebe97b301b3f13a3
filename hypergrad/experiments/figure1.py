r"""Figure 1's experiment: gradient descent on a 2-D test function, η set online.

:func:`run_fig1` runs plain gradient descent with HD, RTHO or MARTHE on one of the functions
of :mod:`hypergrad.problems` from a fixed start (500 steps, :math:`\eta_0 = 0` by default, as
in Figure 1) and returns the trajectory, the per-step history and the best objective reached,
recording a divergence instead of raising it. :func:`sweep_fig1` runs it over methods and
``β``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from hypergrad.dynamics import DivergenceError, sgd
from hypergrad.loop import History, run_online
from hypergrad.online import Marthe, make_tuner
from hypergrad.problems import as_loss

__all__ = ["METHODS", "Fig1Run", "fig1_tuner", "run_fig1", "sweep_fig1"]

#: The online methods :func:`run_fig1` knows.
METHODS = ("hd", "rtho", "marthe")


class Fig1Run(NamedTuple):
    """One run of :func:`run_fig1`.

    ``trajectory``: ``(T+1, 2)`` points ``x_0 … x_T`` (fewer rows when the run diverged: the
    points up to the last finite step); ``history``: the online method's per-step records
    (:class:`~hypergrad.loop.History`); ``best``: the smallest ``f(x_t)`` over the finite
    part of the trajectory; ``diverged_at``: the step ``t`` at which the run diverged, or
    ``None``.
    """

    trajectory: torch.Tensor
    history: History
    best: float
    diverged_at: int | None

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None


def fig1_tuner(f: Callable, method: str, beta: float, lr0: float = 0.0,
               kappa: float | None = None, mu: float | str = "auto") -> Marthe:
    """The online method ``method`` (``"hd"``, ``"rtho"`` or ``"marthe"`` with discount ``mu``)
    on plain gradient descent on ``f``, through :func:`hypergrad.online.make_tuner`."""
    key = method.lower() if isinstance(method, str) else method
    if key not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    options = {"mu": mu} if key == "marthe" else {}
    return make_tuner(key, sgd(as_loss(f)), lr=lr0, beta=beta, kappa=kappa, **options)


def run_fig1(f: Callable, start, method: str, beta: float, steps: int = 500, lr0: float = 0.0,
             kappa: float | None = None, mu: float | str = "auto",
             max_loss_ratio: float = math.inf) -> Fig1Run:
    """Figure 1's experiment: ``steps`` steps of gradient descent on ``f`` from ``start``,
    with the learning rate set online by ``method`` (``"hd"``, ``"rtho"``, ``"marthe"``).

    The objective and the training loss are both ``f`` (float64). The run *diverges* when a
    value (``f``, its gradient, the hypergradient or ``η``) stops being finite or, if
    ``max_loss_ratio`` is finite, when ``f(x_t)`` exceeds ``max_loss_ratio × f(x_0)``; the
    divergence is recorded in ``Fig1Run.diverged_at``, not raised.
    """
    x0 = torch.as_tensor(start, dtype=torch.float64).clone()
    if x0.shape != (2,):
        raise ValueError(f"start must be a point of the plane, got shape {tuple(x0.shape)}")
    tuner = fig1_tuner(f, method, beta, lr0, kappa, mu)
    points = [x0.clone()]
    history = History.empty()

    def record(ostate, info):
        points.append(ostate.state.w["params"]["x"].detach().clone())
        history.append(info)

    diverged_at = None
    objective = as_loss(f)
    try:
        ostate, _ = run_online(tuner, {"x": x0}, [None] * steps, objective,
                               max_loss_ratio=max_loss_ratio, callback=record)
    except DivergenceError as err:
        diverged_at = err.step
    trajectory = torch.stack(points)
    finite = torch.isfinite(trajectory).all(dim=1)
    if not bool(finite.all()):          # keep the points up to the last finite one
        trajectory = trajectory[: int((~finite).nonzero()[0])]
        if diverged_at is None:         # unreachable: run_online checks the losses first
            diverged_at = len(trajectory) - 1
    with torch.no_grad():
        values = f(trajectory)
    values = values[torch.isfinite(values)]
    best = float(values.min()) if len(values) else math.inf
    return Fig1Run(trajectory, history, best, diverged_at)


def sweep_fig1(f: Callable, start, methods, betas, **kw) -> dict[str, list[Fig1Run]]:
    """:func:`run_fig1` for every method and every ``β``: ``{method: [run per β]}``."""
    return {m: [run_fig1(f, start, m, b, **kw) for b in betas] for m in methods}
