"""LRS-OPT schedules judged on draws they never saw: ``f_T`` of several schedules on the same
fixed held-out draws of minibatches (:func:`heldout_objective`), and of every snapshot of an
LRS-OPT run, its last iterate and its average (:func:`trace_heldout`), which shows whether the
run has stopped moving beyond the noise of the draws."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch

from hypergrad import _checks
from hypergrad.dynamics import DivergenceError, Dynamics, Params, State, call_objective
from hypergrad.hypergradient import check_schedule, unroll
from hypergrad.lrs_opt import LrsOptResult

__all__ = ["heldout_objective", "trace_heldout"]


def heldout_objective(dyn: Dynamics, params: Params | State,
                      schedules: Mapping[str, torch.Tensor | Sequence[float]],
                      draws: Sequence[Sequence], objective: Callable
                      ) -> dict[str, list[float | None]]:
    """``f_T(η) = E(θ(w_T(η)))`` (Problem (1)) of each schedule on each of fixed held-out draws.

    Every schedule is trained from the same ``w_0`` on every draw (``T`` minibatches, the
    same for all schedules: the values are *paired*, so differences between schedules are
    read draw by draw), without autograd; the result is deterministic for fixed inputs.

    Args:
        dyn, params: the dynamics and the initial weights ``w_0`` (as :func:`~hypergrad.lrs_opt.lrs_opt`).
        schedules: ``{name: schedule}``, each 1-D with ``T`` entries ``≥ 0`` (in the weights'
            dtype).
        draws: the held-out draws, each a sequence of ``T`` minibatches.
        objective: ``E(params) -> scalar`` (``E(params, buffers)`` with buffers).

    Returns:
        ``{name: [f_T on draw 0, draw 1, …]}``, in the order of ``schedules``; ``None`` where
        training on that draw diverges (a non-finite training loss, state or ``E``).
    """
    theta0 = params.w["params"] if isinstance(params, State) else params
    if not isinstance(theta0, dict) or not theta0:
        raise ValueError("params must be a non-empty dict of tensors (or a State)")
    like = next(iter(theta0.values()))
    if not isinstance(schedules, Mapping) or not schedules:
        raise ValueError(f"schedules must be a non-empty dict {{name: schedule}}, got "
                         f"{_checks.describe(schedules)}")
    checked, T = {}, None
    for name, lrs in schedules.items():
        if not isinstance(name, str):
            raise ValueError(f"schedules must be named by strings, got the name {name!r}")
        try:
            checked[name] = check_schedule(lrs, like=like, length=T)
        except (TypeError, ValueError) as e:
            raise type(e)(f"schedule {name!r}: {e}") from None
        T = len(checked[name]) if T is None else T
    if (isinstance(draws, (str, bytes, torch.Tensor)) or not isinstance(draws, Sequence)
            or not draws):
        raise ValueError(f"draws must be a non-empty list of draws (T minibatches each), got "
                         f"{_checks.describe(draws)}")
    for d, draw in enumerate(draws):
        if isinstance(draw, (str, bytes, torch.Tensor)) or not isinstance(draw, Sequence):
            raise ValueError(f"draw {d} must be a sequence of T = {T} minibatches, got "
                             f"{_checks.describe(draw)}")
        if len(draw) != T:
            raise ValueError(f"draw {d} has {len(draw)} minibatches, but the schedules have "
                             f"T = {T} learning rates")
    out: dict[str, list[float | None]] = {name: [] for name in checked}
    for draw in draws:
        for name, lrs in checked.items():
            out[name].append(_heldout_value(dyn, params, lrs, draw, objective))
    return out


def _heldout_value(dyn, params, lrs, draw, objective) -> float | None:
    try:
        state, _ = unroll(dyn, params, lrs, draw)
    except DivergenceError:
        return None
    with torch.no_grad():
        value = float(call_objective(objective, state, state.w["params"]))
    return value if math.isfinite(value) else None


def trace_heldout(dyn: Dynamics, params: Params | State,
                  snapshots: LrsOptResult | Sequence[dict], draws: Sequence[Sequence],
                  objective: Callable) -> dict:
    """``f_T`` of LRS-OPT's recorded schedules on fixed held-out draws: the convergence trace.

    Each snapshot of a run with ``snapshot_every`` (:class:`~hypergrad.lrs_opt.LrsOptResult`'s ``snapshots``) holds
    the schedule ``η_n`` after iteration ``n`` and the averaged one ``η̄`` (or ``None`` before
    averaging began); both are evaluated by :func:`heldout_objective` on the same ``draws``, so
    the values are paired across snapshots and between ``η_n`` and ``η̄``. A reference has
    converged when these stop moving beyond the spread of the draws.

    Returns:
        A dict with ``"iteration"`` (``[n, …]``), ``"lrs"`` (``f_T`` per draw, per snapshot),
        ``"averaged"`` (``f_T`` per draw of ``η̄``, or ``None``, per snapshot) and ``"draws"``
        (the number of draws); ``None`` for a draw that diverges.
    """
    if isinstance(snapshots, LrsOptResult):
        if snapshots.snapshots is None:
            raise ValueError("this LRS-OPT result has no snapshots: run lrs_opt with "
                             "snapshot_every=k to record them")
        snapshots = snapshots.snapshots
    if not isinstance(snapshots, Sequence) or not all(
            isinstance(x, Mapping) and {"iteration", "lrs"} <= set(x) for x in snapshots):
        raise ValueError("snapshots must be an LrsOptResult or a list of "
                         "{iteration, lrs, averaged} (LrsOptResult.snapshots)")
    if (isinstance(draws, (str, bytes, torch.Tensor)) or not isinstance(draws, Sequence)
            or not draws):
        raise ValueError(f"draws must be a non-empty list of draws (T minibatches each), got "
                         f"{_checks.describe(draws)}")
    out: dict = {"iteration": [], "lrs": [], "averaged": [], "draws": len(draws)}
    for x in snapshots:
        # a schedule with a non-finite entry (saved as None) diverges on every draw
        named = {k: x.get(k) for k in ("lrs", "averaged")
                 if x.get(k) is not None and None not in x[k]}
        values = heldout_objective(dyn, params, named, draws, objective) if named else {}
        out["iteration"].append(x["iteration"])
        out["lrs"].append(values.get("lrs", [None] * len(draws)))
        out["averaged"].append(values.get("averaged", None if x.get("averaged") is None
                                          else [None] * len(draws)))
    return out


# ------------------------------------------------------------------ LRS-OPT, N members at once
