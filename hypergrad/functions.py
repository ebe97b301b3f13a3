r"""The two-dimensional test functions of the paper's Figure 1, and a runner for its experiment.

Each function takes the "weights" :math:`x = (x_1, x_2)` (a tensor of shape ``(2,)``, or a
stack ``(..., 2)`` for contour plots) and returns :math:`f(x)`. :func:`as_loss` turns one into
``loss(params, batch)`` for the library's dynamics, with ``params = {"x": tensor(2)}`` and
the batch ignored: the problems are deterministic and :math:`L_t = E = f`.

* :func:`beale`:
  :math:`(1.5 - x_1 + x_1 x_2)^2 + (2.25 - x_1 + x_1 x_2^2)^2 + (2.625 - x_1 + x_1 x_2^3)^2`,
  minimum 0 at :math:`(3, 0.5)`: sharp ridges and large plateaus.
* :func:`bukin_smoothed`: the book's **[choice]** for the paper's "simplified, smoothed"
  Bukin N. 6, whose exact form the paper does not give: the original
  :math:`100 \sqrt{|u|} + 0.01 |x_1 + 10|`, :math:`u = x_2 - 0.01 x_1^2`, with its outer
  square root dropped and each :math:`|\cdot|` smoothed as
  :math:`\sqrt{(\cdot)^2 + \varepsilon} - \sqrt{\varepsilon}` (``form="abs"``,
  :math:`\varepsilon = 10^{-2}`). Its valley of minimisers :math:`x_2 = 0.01 x_1^2` has a
  V-shaped cross-section (the gradient across it keeps a magnitude near 100 and flips when
  the valley is crossed) and a slope of at most 0.01 along it. ``form="square"`` is the
  quadratic-valley variant :math:`100 u^2 + 0.01 |x_1 + 10|`.

:func:`run_fig1` runs plain gradient descent with HD, RTHO or MARTHE on one of them from a
fixed start (500 steps, :math:`\eta_0 = 0` by default, as in Figure 1) and returns the
trajectory, the per-step history and the best objective reached, recording a divergence
instead of raising it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from hypergrad.dynamics import DivergenceError, sgd
from hypergrad.online import HD, RTHO, History, Marthe, run_online

__all__ = ["beale", "bukin_smoothed", "smooth_abs", "as_loss", "grid", "Problem", "problem",
           "PROBLEMS", "make_tuner", "run_fig1", "sweep_fig1", "Fig1Run", "BEALE_MIN",
           "BUKIN_MIN", "METHODS"]

#: The minimiser of the Beale function (its minimum value is 0).
BEALE_MIN = (3.0, 0.5)
#: The minimiser of :func:`bukin_smoothed` (its minimum value is 0).
BUKIN_MIN = (-10.0, 1.0)
#: The online methods :func:`run_fig1` knows.
METHODS = ("hd", "rtho", "marthe")


def _xy(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape[-1] != 2:
        raise ValueError(f"a point of the plane must have last dimension 2, got shape "
                         f"{tuple(x.shape)}")
    return x[..., 0], x[..., 1]


def beale(x: torch.Tensor) -> torch.Tensor:
    """The Beale function; minimum 0 at ``(3, 0.5)``. ``x`` has shape ``(..., 2)``."""
    x1, x2 = _xy(x)
    return ((1.5 - x1 + x1 * x2) ** 2 + (2.25 - x1 + x1 * x2 ** 2) ** 2
            + (2.625 - x1 + x1 * x2 ** 3) ** 2)


def smooth_abs(u: torch.Tensor, eps: float) -> torch.Tensor:
    """``|u| ≈ √(u² + ε) − √ε``: smooth, convex, 0 at ``u = 0``, within ``√ε`` of ``|u|``."""
    return torch.sqrt(u ** 2 + eps) - math.sqrt(eps)


def bukin_smoothed(x: torch.Tensor, eps: float = 1e-2, form: str = "abs") -> torch.Tensor:
    """A simplified, smoothed Bukin N. 6 (``x`` of shape ``(..., 2)``), minimum 0 at ``(−10, 1)``.

    With ``u = x_2 − 0.01x_1²`` and ``|·|`` smoothed by :func:`smooth_abs`:

    * ``form="abs"``: ``100 |u| + 0.01 |x_1 + 10|`` — the original
      ``100 √|u| + 0.01 |x_1 + 10|`` with its outer square root dropped;
    * ``form="square"``: ``100 u² + 0.01 |x_1 + 10|`` — the valley made quadratic.

    Both vanish on the valley ``x_2 = 0.01x_1²`` only through their first term; the second,
    with slope at most 0.01, pulls along the valley towards ``x_1 = −10``.
    """
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    x1, x2 = _xy(x)
    u = x2 - 0.01 * x1 ** 2
    if form == "abs":
        across = 100.0 * smooth_abs(u, eps)
    elif form == "square":
        across = 100.0 * u ** 2
    else:
        raise ValueError(f"form must be 'abs' or 'square', got {form!r}")
    return across + 0.01 * smooth_abs(x1 + 10.0, eps)


def as_loss(f: Callable[[torch.Tensor], torch.Tensor]) -> Callable:
    """``loss(params, batch) = f(params["x"])``: ``f`` as the library's training loss
    (and, called with any batch, as the objective)."""

    def loss(params, batch=None):
        return f(params["x"])

    return loss


def grid(f: Callable[[torch.Tensor], torch.Tensor], xlim: tuple[float, float],
         ylim: tuple[float, float], n: int = 200
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(X, Y, F)``: ``f`` on an ``n × n`` grid of ``xlim × ylim`` (float64), for ``contour``."""
    xs = torch.linspace(*xlim, n, dtype=torch.float64)
    ys = torch.linspace(*ylim, n, dtype=torch.float64)
    X, Y = torch.meshgrid(xs, ys, indexing="xy")
    with torch.no_grad():
        F = f(torch.stack([X, Y], dim=-1))
    return X, Y, F


class Problem(NamedTuple):
    """A test problem of Figure 1: the function, the start and a window for its contour plot."""

    name: str
    f: Callable[[torch.Tensor], torch.Tensor]
    start: tuple[float, float]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    minimum: tuple[float, float]


#: The book's Figure 1 problems. The paper does not give its starting points; the book uses
#: ``(1, 1.5)`` for Beale and ``(−5, 0)`` for Bukin, with ``ε = 10⁻²`` and ``form="abs"``
#: (the settings of the project's first exploration, fixed before the comparison was run).
PROBLEMS = {
    "beale": Problem("Beale", beale, (1.0, 1.5), (-0.5, 4.0), (-1.0, 2.0), BEALE_MIN),
    "bukin": Problem("Bukin N. 6 (smoothed)", bukin_smoothed, (-5.0, 0.0), (-11.0, 1.0),
                     (-1.0, 1.5), BUKIN_MIN),
}


def problem(name: str) -> Problem:
    """The Figure 1 problem called ``name`` (``"beale"`` or ``"bukin"``)."""
    try:
        return PROBLEMS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown problem {name!r}; choose one of {sorted(PROBLEMS)}") from None


class Fig1Run(NamedTuple):
    """One run of :func:`run_fig1`.

    ``trajectory``: ``(T+1, 2)`` points ``x_0 … x_T`` (fewer rows when the run diverged: the
    points up to the last finite step); ``history``: the online method's per-step records
    (:class:`~hypergrad.online.History`); ``best``: the smallest ``f(x_t)`` over the finite
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


def make_tuner(f: Callable, method: str, beta: float, lr0: float = 0.0,
               kappa: float | None = None, mu: float | str = "auto") -> Marthe:
    """The online method ``method`` (``"hd"``, ``"rtho"`` or ``"marthe"`` with discount ``mu``)
    on plain gradient descent on ``f``."""
    dyn = sgd(as_loss(f))
    method = method.lower()
    if method == "hd":
        return HD(dyn, lr=lr0, beta=beta, kappa=kappa)
    if method == "rtho":
        return RTHO(dyn, lr=lr0, beta=beta, kappa=kappa)
    if method == "marthe":
        return Marthe(dyn, lr=lr0, beta=beta, mu=mu, kappa=kappa)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


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
    tuner = make_tuner(f, method, beta, lr0, kappa, mu)
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
