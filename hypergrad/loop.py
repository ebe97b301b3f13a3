"""Running a tuner over a training run: :func:`run_online`, its per-step :class:`History`, the
one blow-up rule (:func:`check_blowup`, and :func:`blowup` on the device), and Section 4's
step-size selection (:func:`select_hyper_lr`).

A tuner (:mod:`hypergrad.online`) is a pair ``init``/``step``; this module runs one over the
minibatches and decides when a run has *diverged*: a value is not finite, or the training loss
exceeds ``max_loss_ratio`` times its first value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hypergrad.dynamics import DivergenceError, Params, State
from hypergrad.online import FixedSchedule, Marthe, OnlineState, StepInfo, _check_number

__all__ = ["History", "run_online", "check_blowup", "blowup", "select_hyper_lr"]


_FIELDS = ("lr", "mu", "beta", "hypergradient", "loss", "objective")


@dataclass
class History:
    """Per-step records of an online run (lists of floats, index ``t``).

    ``append`` converts one :class:`~hypergrad.online.StepInfo` (one host synchronisation);
    ``from_infos`` converts a whole run at once (one synchronisation in all).
    """

    lr: list[float]
    mu: list[float]
    beta: list[float]
    hypergradient: list[float]
    loss: list[float]
    objective: list[float]

    @classmethod
    def empty(cls) -> History:
        return cls([], [], [], [], [], [])

    def append(self, info: StepInfo) -> None:
        for name in _FIELDS:
            getattr(self, name).append(float(getattr(info, name)))

    def extend(self, infos: Sequence[StepInfo]) -> None:
        """Append many records, read from the device at once."""
        if not infos:
            return
        rows = torch.stack([torch.stack([torch.as_tensor(getattr(i, n)).double() for n in _FIELDS])
                            for i in infos]).cpu().tolist()
        for row in rows:
            for name, v in zip(_FIELDS, row, strict=True):
                getattr(self, name).append(v)

    @classmethod
    def from_infos(cls, infos: Sequence[StepInfo]) -> History:
        hist = cls.empty()
        hist.extend(infos)
        return hist


def check_blowup(step: int, loss: float, first_loss: float, max_loss_ratio: float) -> None:
    """The blow-up rule: a run diverges when the training loss exceeds ``max_loss_ratio`` times
    its first value (raises :class:`~hypergrad.dynamics.DivergenceError` naming ``step``).
    :func:`blowup` is the same rule as a device tensor."""
    loss, first_loss = float(loss), float(first_loss)
    if loss > max_loss_ratio * max(first_loss, 1e-12):
        raise DivergenceError(step, f"the training loss blew up ({loss:.3g} > "
                                    f"{max_loss_ratio} × {first_loss:.3g})", blowup=True)


def blowup(loss: torch.Tensor, first_loss: torch.Tensor, max_loss_ratio: float) -> torch.Tensor:
    """:func:`check_blowup`'s rule on the device (a bool tensor, computed in float64; no sync)."""
    loss, first = loss.double(), first_loss.double()
    return loss > max_loss_ratio * torch.clamp(first, min=1e-12)


def _check_run_args(tuner, batches, objectives, max_loss_ratio, check_every, start: int) -> None:
    """Clear errors, naming the argument and its value, before anything runs."""
    if not (isinstance(max_loss_ratio, (int, float)) and max_loss_ratio > 0):  # NaN too
        raise ValueError(f"max_loss_ratio must be a number > 0 (math.inf turns the rule off), "
                         f"got {max_loss_ratio!r}")
    if check_every is not None and not (isinstance(check_every, int) and check_every >= 1):
        raise ValueError(f"check_every must be an integer >= 1 or None, got {check_every!r}")
    try:
        n = len(batches)
    except TypeError:
        n = None
    if not callable(objectives):
        try:
            m = len(objectives)
        except TypeError:
            raise ValueError("objectives must be a callable or a sequence of callables, got "
                             f"{type(objectives).__name__}") from None
        if n is not None and m < n:
            raise ValueError(f"objectives has {m} entries but batches has {n}: one objective "
                             "per step (or one callable for all)")
    if isinstance(tuner, FixedSchedule) and not callable(tuner.schedule) and n is not None:
        if len(tuner.schedule) < start + n:
            raise ValueError(f"schedule has {len(tuner.schedule)} learning rates but the run needs "
                             f"{start + n} (steps {start} … {start + n - 1})")


def _read_verdict(fail_t: torch.Tensor, fail_code: torch.Tensor) -> tuple[int, int]:
    """The divergence record of :func:`run_online` read on the host: ``(t, code)`` of the
    first failing step (``t = -1``: none yet). One device read (one synchronisation): what a
    check of ``run_online`` costs, and the only read it makes until the run ends."""
    t, code = torch.stack([fail_t, fail_code]).tolist()
    return int(t), int(code)


def run_online(tuner: Marthe | FixedSchedule, params: Params | State, batches: Sequence,
               objectives: Callable | Sequence[Callable], *, max_loss_ratio: float = 10.0,
               ostate: OnlineState | None = None, callback: Callable | None = None,
               check_every: int | None = 1) -> tuple[OnlineState, History]:
    """Run ``tuner`` over ``batches``; ``objectives`` is one callable or one per step.

    A run *diverges* when a value is not finite or when the training loss exceeds
    ``max_loss_ratio`` times the first one (a blow-up): :class:`~hypergrad.dynamics.DivergenceError`
    names the step. The verdict is kept on the device (the first failing step and why) and
    read every ``check_every`` steps and at the end (``None``: at the end only), so the steps
    themselves never wait for the device; ``check_every=1`` stops at the failing step, as
    :meth:`~hypergrad.online.Marthe.step` does. The :class:`History` is read from the device once.

    Exactly: with ``check_every=k`` and ``n`` batches, the verdict is read (one device read,
    ``_read_verdict``) after the ``k``-th, ``2k``-th, … step of this call, and after the
    ``n``-th when that is not one of them: ``⌈n/k⌉`` reads (``None``: one read, after the
    ``n``-th step; no batches: none). Steps are counted from 1 within this call, whatever
    ``ostate.t`` it starts from. A run whose step ``t = s`` fails (the ``i``-th step of this
    call, ``s = ostate.t + i - 1``) raises at the first read after it: after step
    ``min(⌈i/k⌉·k, n)`` of this call, having run the steps after ``s`` up to there; the
    error names ``s`` (the first failing step), whichever read finds it. ``callback(ostate,
    info)`` follows each step and that step's read every ``k`` steps, if it has one (so it is
    not called for a step whose such read raises); the read at the end, after the ``n``-th
    step, follows the last callback. A run that does not diverge returns a :class:`History`
    of ``n`` records.
    """
    ostate = ostate or tuner.init(params)
    _check_run_args(tuner, batches, objectives, max_loss_ratio, check_every, ostate.t)
    infos: list[StepInfo] = []
    first = None
    fail_t = fail_code = None
    checked = False

    def check() -> None:
        if fail_t is None:                            # no step yet: nothing to read
            return
        step, code = _read_verdict(fail_t, fail_code)  # the one synchronisation of a check
        if step < 0:
            return
        info = infos[step - infos[0].t]
        if code == 4:
            raise DivergenceError(step, f"the training loss blew up ({float(info.loss):.3g} > "
                                        f"{max_loss_ratio} × {float(first):.3g})", blowup=True)
        raise DivergenceError(step, tuner.FAILURES[code])

    for i, batch in enumerate(batches):
        objective = objectives if callable(objectives) else objectives[i]
        ostate, info = tuner.step(ostate, batch, objective, check=False)
        infos.append(info)
        first = info.loss if first is None else first
        code = tuner.failure(info)
        if max_loss_ratio != math.inf:
            code = torch.where((code == 0) & blowup(info.loss, first, max_loss_ratio), 4, code)
        if fail_t is None:
            fail_t = torch.full_like(code, -1)
            fail_code = torch.zeros_like(code)
        new = (fail_t < 0) & (code > 0)
        fail_t = torch.where(new, info.t, fail_t)
        fail_code = torch.where(new, code, fail_code)
        checked = check_every is not None and (i + 1) % check_every == 0
        if checked:
            check()
        if callback is not None:
            callback(ostate, info)
    if not checked:                                   # the end, unless just read
        check()
    return ostate, History.from_infos(infos)


def select_hyper_lr(run: Callable[[float], Any], start: float, factor: float = 10.0,
                    max_tries: int = 12) -> tuple[float, Any]:
    """The step-size selection procedure of Section 4: try ``start``, divide by ``factor``.

    ``run(value)`` runs the tuner with that ``κ`` (or ``β``) and raises
    :class:`~hypergrad.dynamics.DivergenceError` when the run diverges. Returns ``(value, result)`` for the
    first value whose run finished.
    """
    value = _check_number("start", start)
    if value == 0 or factor <= 1:
        raise ValueError("start must be > 0 and factor > 1")
    for _ in range(max_tries):
        try:
            return value, run(value)
        except DivergenceError:
            value /= factor
    raise DivergenceError(-1, f"every value from {start:.3g} down to {value * factor:.3g} diverged",
                          blowup=True)
