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

:func:`teacher_student` is the small classification problem that chapters 2–4 check their
identities on: a one-hidden-layer tanh network (10 inputs, 16 hidden units, 3 classes) on
synthetic data labelled by a noisy linear teacher, float64.

(Figure 1's experiment itself, gradient descent with HD, RTHO or MARTHE on these functions,
is :func:`hypergrad.experiments.figure1.run_fig1`.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

__all__ = ["beale", "bukin_smoothed", "smooth_abs", "as_loss", "grid", "Problem", "problem",
           "PROBLEMS", "BEALE_MIN", "BUKIN_MIN", "teacher_student", "TeacherStudent"]

#: The minimiser of the Beale function (its minimum value is 0).
BEALE_MIN = (3.0, 0.5)
#: The minimiser of :func:`bukin_smoothed` (its minimum value is 0).
BUKIN_MIN = (-10.0, 1.0)


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


class TeacherStudent(NamedTuple):
    """The toy problem of chapters 2–4: ``params0`` (``W1, b1, W2, b2``), the training and
    validation sets, ``net(params, x)`` (logits), ``loss(params, batch)`` (the training
    cross-entropy ``L_t``) and ``objective(params)`` (the validation cross-entropy ``E``)."""

    params0: dict[str, torch.Tensor]
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    net: Callable
    loss: Callable
    objective: Callable


def teacher_student(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64,
                    seed: int = 0, n_in: int = 10, n_hidden: int = 16, n_classes: int = 3,
                    n_train: int = 512, n_val: int = 256) -> TeacherStudent:
    """A one-hidden-layer tanh network on data labelled by a noisy linear teacher.

    ``x ~ N(0, I)``, ``y = argmax(x W* + 0.5 ξ)`` with ``W*, ξ ~ N(0, I)``; the first
    ``n_train`` examples are the training set, the next ``n_val`` the validation set. The
    student starts from ``W1 ~ N(0, 1/n_in)``, ``W2 ~ N(0, 1/n_hidden)`` and zero biases.
    Everything is drawn from one generator seeded with ``seed`` (so the problem is the same
    on every machine) and then moved to ``device``.
    """
    import torch.nn.functional as F

    for name, n in (("n_in", n_in), ("n_hidden", n_hidden), ("n_classes", n_classes),
                    ("n_train", n_train), ("n_val", n_val)):
        if not (isinstance(n, int) and n > 0):
            raise ValueError(f"{name} must be a positive integer, got {n!r}")
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_val
    x_all = torch.randn(n, n_in, generator=g, dtype=dtype)
    teacher = torch.randn(n_in, n_classes, generator=g, dtype=dtype)
    y_all = (x_all @ teacher + 0.5 * torch.randn(n, n_classes, generator=g, dtype=dtype)
             ).argmax(1)
    train = (x_all[:n_train].to(device), y_all[:n_train].to(device))
    val = (x_all[n_train:].to(device), y_all[n_train:].to(device))
    params0 = {
        "W1": (torch.randn(n_in, n_hidden, generator=g, dtype=dtype) / math.sqrt(n_in)
               ).to(device),
        "b1": torch.zeros(n_hidden, dtype=dtype, device=device),
        "W2": (torch.randn(n_hidden, n_classes, generator=g, dtype=dtype)
               / math.sqrt(n_hidden)).to(device),
        "b2": torch.zeros(n_classes, dtype=dtype, device=device),
    }

    def net(p, x):
        return torch.tanh(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]

    def loss(p, batch):
        x, y = batch
        return F.cross_entropy(net(p, x), y)

    def objective(p):
        return F.cross_entropy(net(p, val[0]), val[1])

    return TeacherStudent(params0, train, val, net, loss, objective)

