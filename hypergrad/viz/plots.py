"""Plotting helpers of the book: plain matplotlib, one function per kind of figure.

``import hypergrad`` does not import this module (nor matplotlib); import it explicitly as
``from hypergrad import plots``. Every function draws on the axes it is given (``ax=None``
makes a new figure) and returns them, so a chapter composes its figures with
``plt.subplots`` and the tests count what was drawn.

Conventions: one ``Line2D`` per plotted series (``ax.lines``), markers that are not series
(starting points, minimisers, diverged runs) drawn with ``scatter``, axis labels always set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

from hypergrad.experiments.analysis import sci

__all__ = [
    # Part I
    "new_axes", "as_array", "plot_curves", "plot_schedule", "plot_surface_trajectories",
    "plot_best_vs_beta", "plot_hypergradient_over_t", "plot_tangent_sparsity", "plot_cost",
    "plot_constant_scan",
    # numbers and tables in the prose
    "sci", "sci_list", "html_table", "shared_legend",
]



def sci_list(values: Sequence[float], digits: int = 2, empty: str = "none") -> str:
    """Numbers joined by commas, each written by :func:`sci` (``empty`` when there are none)."""
    return ", ".join(sci(v, digits) for v in values) or empty


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = ""):
    """A table for a chapter's output (an ``IPython.display.HTML``): ``header`` and
    ``rows`` of cells, numbers written by :func:`sci` (3 significant digits), text as is."""
    from html import escape

    from IPython.display import HTML

    def cell(value, tag):
        text = value if isinstance(value, str) else sci(value, 3)
        align = "left" if isinstance(value, str) and not value[:1].isdigit() else "right"
        return f'<{tag} style="text-align:{align}">{escape(text)}</{tag}>'

    head = "".join(cell(h, "th") for h in header)
    body = "".join("<tr>" + "".join(cell(v, "td") for v in row) + "</tr>" for row in rows)
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return HTML(f'<table class="table">{cap}<thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table>")


# --- Part I ------------------------------------------------------------------------------
# Figures of chapters 1–4: schedules, the exact hypergradient and its cost, Figure 1 of the
# paper (test functions, trajectories, best objective against β), MARTHE's traces.


def new_axes(ax=None, figsize=(6.0, 4.0)):
    """``ax`` itself, or the axes of a new figure when ``ax`` is ``None``."""
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize)
    return ax


def as_array(values: Any, field: str = "lr") -> np.ndarray:
    """A 1-D float array from a list, a tensor, or a :class:`~hypergrad.loop.History`
    (its ``field``)."""
    if hasattr(values, field) and not isinstance(values, (torch.Tensor, np.ndarray)):
        values = getattr(values, field)
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=float).reshape(-1)


def _legend(ax, n: int) -> None:
    if n > 0:
        ax.legend(frameon=False, fontsize=9)


def shared_legend(fig, axes=None, ncols: int = 4, **kw):
    """One legend for the whole figure, below its axes: the axes' own legends are removed
    and each label appears once (first handle wins). Needs a constrained layout."""
    axes = list(fig.axes if axes is None else np.ravel(axes))
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if not label.startswith("_"):
                seen.setdefault(label, handle)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    return fig.legend(list(seen.values()), list(seen), loc="outside lower center",
                      ncols=min(ncols, max(len(seen), 1)), frameon=False, fontsize=9,
                      **kw)


def plot_curves(ax, curves: Mapping[str, Any], *, xlabel: str = "step $t$", ylabel: str = "",
                logy: bool = False, symlog: float | None = None, field: str = "lr",
                title: str | None = None, **line_kw):
    """One line per entry of ``curves`` (name → values over ``t``; a History gives ``field``).

    ``logy``: log scale (zeros are not drawn); ``symlog=c``: linear within ``±c`` and
    logarithmic beyond, so that zeros stay visible.
    """
    ax = new_axes(ax)
    for name, values in curves.items():
        y = as_array(values, field)
        ax.plot(np.arange(len(y)), y, label=name, **line_kw)
    if symlog is not None:
        ax.set_yscale("symlog", linthresh=symlog)
    elif logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    _legend(ax, len(curves))
    return ax


def plot_schedule(ax, histories: Mapping[str, Any], *, logy: bool = False,
                  symlog: float | None = None, title: str | None = None, **line_kw):
    """Learning rate ``η_t`` against ``t``: one line per schedule (a History, a list or a tensor).

    ``logy``/``symlog`` as in :func:`plot_curves` (use ``symlog`` when ``η_t`` reaches 0).
    """
    return plot_curves(ax, histories, ylabel=r"learning rate $\eta_t$", logy=logy,
                       symlog=symlog, field="lr", title=title, **line_kw)


def plot_surface_trajectories(ax, f, trajectories: Mapping[str, torch.Tensor], xlim, ylim, *,
                              n: int = 200, levels: int = 30, start=None, minimum=None,
                              title: str | None = None):
    """Contours of ``log10(f − min f + δ)`` on ``xlim × ylim`` and one line per trajectory.

    ``trajectories``: name → ``(N, 2)`` points; each line ends in a square (its last point).
    ``start`` and ``minimum`` (points) are marked with ``scatter`` (a dot and a star); lines
    leaving the window are clipped.
    """
    from hypergrad.problems import grid

    ax = new_axes(ax)
    X, Y, F = (t.numpy() for t in grid(f, xlim, ylim, n))
    lo, hi = float(np.nanmin(F)), float(np.nanmax(F))
    Z = np.log10(F - lo + 1e-6 * max(hi - lo, 1e-12))
    ax.contourf(X, Y, Z, levels=levels, cmap="viridis", alpha=0.85)
    ax.contour(X, Y, Z, levels=levels, colors="k", linewidths=0.3, alpha=0.4)
    styles = iter(["-", "--", ":", "-."] * 4)
    for name, traj in trajectories.items():
        pts = as_points(traj)
        (line,) = ax.plot(pts[:, 0], pts[:, 1], lw=1.6, ls=next(styles), label=name)
        ax.scatter(pts[-1:, 0], pts[-1:, 1], marker="s", s=28, color=line.get_color(),
                   edgecolors="k", linewidths=0.5, zorder=6)      # where the run ended
    if start is not None:
        ax.scatter([start[0]], [start[1]], c="white", edgecolors="k", s=40, zorder=5,
                   label="start")
    if minimum is not None:
        ax.scatter([minimum[0]], [minimum[1]], c="red", marker="*", s=120, zorder=5,
                   label="minimum")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if title:
        ax.set_title(title)
    ax.legend(frameon=True, fontsize=9, loc="best")
    return ax


def as_points(traj) -> np.ndarray:
    """``(N, 2)`` float array of a trajectory (a tensor, an array or a
    :class:`~hypergrad.experiments.figure1.Fig1Run`)."""
    if hasattr(traj, "trajectory"):
        traj = traj.trajectory
    if isinstance(traj, torch.Tensor):
        traj = traj.detach().cpu().double().numpy()
    pts = np.asarray(traj, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"a trajectory must have shape (N, 2), got {pts.shape}")
    return pts


def _best(value) -> float:
    """The best objective of a run (a :class:`~hypergrad.experiments.figure1.Fig1Run` or a number);
    NaN when it diverged."""
    if hasattr(value, "best"):
        return math.nan if value.diverged else float(value.best)
    if value is None:
        return math.nan
    return float(value)


def plot_best_vs_beta(ax, betas: Sequence[float], results: Mapping[str, Sequence[Any]], *,
                      title: str | None = None, ylabel: str = "best objective reached"):
    """Best objective against the hyper-learning rate ``β`` (log–log), one line per method.

    ``results``: method → one entry per ``β``, a :class:`~hypergrad.experiments.figure1.Fig1Run` or a
    number; a diverged run (or ``None``/NaN) is left out of the line and marked with an ``×``
    at the bottom.
    """
    ax = new_axes(ax)
    b = np.asarray(betas, dtype=float)
    diverged_b = []
    for name, runs in results.items():
        y = np.array([_best(r) for r in runs], dtype=float)
        if len(y) != len(b):
            raise ValueError(f"{name}: {len(y)} results for {len(b)} values of beta")
        ok = np.isfinite(y)
        (line,) = ax.plot(b[ok], y[ok], marker="o", label=name)
        if (~ok).any():
            diverged_b.append((b[~ok], line.get_color()))
    ax.set_xscale("log")
    ax.set_yscale("log")
    if len(b):
        ax.set_xlim(b.min() / 2, b.max() * 2)       # room for the × of diverged runs
    trans = ax.get_xaxis_transform()
    for i, (bs, color) in enumerate(diverged_b):
        ax.scatter(bs, np.full(len(bs), 0.03 + 0.04 * i), marker="x", color=color,
                   transform=trans, clip_on=False, label="diverged" if i == 0 else None)
    ax.set_xlabel(r"hyper-learning rate $\beta$")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    _legend(ax, len(results))
    return ax


def plot_hypergradient_over_t(ax, grad, *, starts: Mapping[str, int] | None = None,
                              title: str | None = None, symlog: bool = False,
                              ylabel: str = r"$\partial f_T / \partial \eta_t$"):
    """The hypergradient ``∂f_T/∂η_t`` against ``t``: one tensor, or name → tensor.

    ``starts``: name → the step of each curve's first entry (default 0), e.g. for the
    hypergradient of a tail ``η_{t_0}, …, η_{T-1}`` of the schedule.
    """
    curves = grad if isinstance(grad, Mapping) else {"": grad}
    starts = starts or {}
    ax = new_axes(ax)
    markers = iter(["o", "x", "+", "s", "^", "v", "d"] * 4)
    for name, g in curves.items():
        y = as_array(g)
        t0 = starts.get(name, 0)
        ax.plot(np.arange(t0, t0 + len(y)), y, marker=next(markers), ms=4, lw=1,
                label=name or None)
    if symlog:
        ax.set_yscale("symlog", linthresh=1e-6)
    ax.set_xlabel(r"step $t$ (the learning rate $\eta_t$)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if isinstance(grad, Mapping):
        _legend(ax, len(curves))
    return ax


def plot_tangent_sparsity(ax, norms, *, title: str | None = None, colorbar: bool = True):
    """``‖column s of Z_t‖`` as an image (rows ``t``, columns ``s``); exact zeros are blank.

    ``norms``: a ``(T+1, T)`` array, entry ``[t, s] = ‖dw_t/dη_s‖``.
    """
    ax = new_axes(ax)
    N = as_2d(norms)
    img = np.where(N > 0, np.log10(np.where(N > 0, N, 1.0)), np.nan)
    im = ax.imshow(img, origin="upper", cmap="magma", aspect="auto", interpolation="nearest")
    ax.set_xlabel(r"column $s$ ($\partial w_t / \partial \eta_s$)")
    ax.set_ylabel("step $t$")
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label=r"$\log_{10} \|\partial w_t/\partial \eta_s\|$")
    return ax


def as_2d(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {arr.shape}")
    return arr


def plot_cost(axes, T_values, times: Mapping[str, Sequence[float]],
              memories: Mapping[str, Sequence[float]], *, title: str | None = None):
    """Time (s) and peak memory (MiB) against the horizon ``T``, log–log, one line per mode.

    ``axes``: two axes ``(time, memory)``, or ``None`` for a new figure. ``T_values``: one
    list for every mode, or mode → list (modes may be measured on different horizons).
    Returns the two axes.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(8.0, 3.6))
    ax_t, ax_m = axes
    for ax, data, ylabel in ((ax_t, times, "time (s)"), (ax_m, memories, "peak memory (MiB)")):
        for mode, ys in data.items():
            Ts = T_values[mode] if isinstance(T_values, Mapping) else T_values
            Ts, ys = np.asarray(Ts, dtype=float), np.asarray(ys, dtype=float)
            if len(Ts) != len(ys):
                raise ValueError(f"{mode}: {len(ys)} measurements for {len(Ts)} horizons")
            ax.plot(Ts, np.maximum(ys, 1e-9), marker="o", label=mode)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("horizon $T$")
        ax.set_ylabel(ylabel)
        _legend(ax, len(data))
    if title:
        ax_t.figure.suptitle(title)
    return ax_t, ax_m


def plot_constant_scan(ax, cs, values, *, best: float | None = None,
                       ylabel: str = r"$f_T(c\,\mathbf{1})$", title: str | None = None):
    """The objective of the constant schedules ``η_t = c`` against ``c``, log–log.

    ``cs``: the constants; ``values``: ``f_T`` of each (NaN or inf for a run that diverged:
    it is left out of the line). ``best``: a constant marked by a dotted vertical line.
    One line through the finite values, with a marker at each.
    """
    ax = new_axes(ax)
    c, y = as_array(cs), as_array(values)
    if len(c) != len(y):
        raise ValueError(f"{len(y)} values for {len(c)} constants")
    ok = np.isfinite(y)
    ax.plot(c[ok], y[ok], marker="o")
    ax.set_xscale("log")
    ax.set_yscale("log")
    if best is not None:
        ax.axvline(best, color="gray", ls=":")
    ax.set_xlabel(r"constant learning rate $c$ ($\eta_t = c$)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return ax
