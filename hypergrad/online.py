"""Online schedules: HD, RTHO and MARTHE as one algorithm (the paper's Algorithm 1).

MARTHE keeps one state-sized tangent, the discounted accumulation of Eq. 9,

    Z_{t+1} = μ_t A_t Z_t + B_t,   Z_0 = 0,

and moves the learning rate along the online hypergradient estimate of Eq. 11,

    Δ_t = ∇E(θ(w_t))ᵀ θ(Z_t),      η_t = max(η_{t-1} − β_t Δ_t, 0).

``μ = 0`` gives HD (Baydin et al., ``Z_t = B_{t-1}``) and ``μ = 1`` gives RTHO (Franceschi
et al., ``Z_t`` is the derivative of ``w_t`` along a constant schedule); :class:`HD` and
:class:`RTHO` *are* :class:`Marthe` with ``μ`` fixed. ``mu="auto"`` is Appendix A's rule
(Eq. 10): with ``p_t = ∇E(w_t)ᵀ θ(B_{t-1})``, ``c = clip(Δ_t / p_t, 0, 1)``,
``ρ_t = (ρ_{t-1} + 1) μ_{t-1}`` and ``μ_t = c^{1/(1+ρ_t)}``. A number for ``kappa`` turns on
the adaptive hyper-learning rate ``β_t = max(β_{t-1} + κ Δ_t Δ_{t-1}, 0)``.

Step 4 of Algorithm 1 is ``jvp(Φ_t, (w_t, η_t), (μ_t Z_t, 1))``: ``w_{t+1}`` and ``Z_{t+1}``
together, at the *current* ``η_t``. :meth:`~hypergrad.dynamics.Dynamics.phi_jvp` computes it
from ``(∇L_t, ∇²L_t θ(μ_t Z_t))`` and the tangent of the cheap elementwise update, and skips the
Hessian-vector product whenever ``μ_t = 0``; the tests hold it equal, to 1e-10, to the one
``torch.func.jvp`` call as written.

Each tuner (:class:`Marthe`, :class:`HD`, :class:`RTHO`, :class:`FixedSchedule`) is a pair
``init(params) -> OnlineState`` and ``step(ostate, batch, objective) -> (OnlineState, StepInfo)``;
:func:`make_tuner` builds one by name and :func:`run_online` runs any of them. A step computes
its numbers first and checks them after (:func:`~hypergrad.dynamics.check_finite`); the one
blow-up rule of a run is :func:`check_blowup`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from hypergrad.dynamics import (
    Batch,
    DivergenceError,
    Dynamics,
    Params,
    State,
    as_lr,
    check_finite,
    objective_value_and_grad,
)
from hypergrad.tree import tree_dot, tree_scale, tree_zeros_like

__all__ = ["Marthe", "HD", "RTHO", "FixedSchedule", "make_tuner", "TUNERS", "OnlineState",
           "StepInfo", "History", "run_online", "check_blowup", "select_hyper_lr"]


class OnlineState(NamedTuple):
    """Everything Algorithm 1 carries from step ``t-1`` to step ``t``.

    ``state`` is ``w_t``; ``Z`` is ``Z_t`` (shaped like ``state.w``); ``lr``, ``beta``, ``mu``,
    ``rho`` and ``delta`` are ``η_{t-1}``, ``β_{t-1}``, ``μ_{t-1}``, ``ρ_{t-1}`` and
    ``Δ_{t-1}`` (at ``t = 0``: ``η_0``, ``β_0``, 0, 0, 0); ``B_prev`` is ``θ(B_{t-1})`` (kept
    only for ``mu="auto"``); ``t`` is the step index. A :class:`FixedSchedule` keeps no
    tangent (``Z = None``).
    """

    state: State
    Z: dict | None
    lr: float
    beta: float
    mu: float
    rho: float
    delta: float
    B_prev: Params | None
    t: int


class StepInfo(NamedTuple):
    """What step ``t`` used: ``η_t``, ``μ_t``, ``β_t``, ``Δ_t``, ``L_t(w_t)`` and ``E(w_t)``."""

    t: int
    lr: float
    mu: float
    beta: float
    hypergradient: float
    loss: float
    objective: float


def _check_number(name: str, value, lo: float = 0.0, hi: float = math.inf) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not (lo <= x <= hi):  # also rejects NaN
        interval = f"[{lo}, {hi}]" if hi < math.inf else f">= {lo}"
        raise ValueError(f"{name} must be {interval}, got {value!r}")
    return x


class _Tuner:
    """What every tuner shares: ``θ(w_t)`` and saving/restoring an :class:`OnlineState`."""

    dyn: Dynamics

    @staticmethod
    def params(ostate: OnlineState) -> Params:
        """``θ(w_t)``."""
        return ostate.state.w["params"]

    @staticmethod
    def state_dict(ostate: OnlineState) -> dict[str, Any]:
        """A plain dict (for ``torch.save``); :meth:`load_state_dict` restores it exactly."""
        return {"format": "hypergrad.OnlineState/1", **ostate._asdict(),
                "state": ostate.state._asdict()}

    @staticmethod
    def load_state_dict(d: dict[str, Any]) -> OnlineState:
        """The :class:`OnlineState` saved by :meth:`state_dict` (checked by its format tag)."""
        if d.get("format") != "hypergrad.OnlineState/1":
            raise ValueError("not a hypergrad online state (missing or unknown 'format')")
        fields = {k: d[k] for k in OnlineState._fields}
        fields["state"] = State(**d["state"])
        return OnlineState(**fields)

    def _init_state(self, params: Params | State, buffers: Params | None) -> State:
        return params if isinstance(params, State) else self.dyn.init(params, buffers)


@dataclass(frozen=True, init=False)
class Marthe(_Tuner):
    """MARTHE (Algorithm 1): online learning-rate schedule by a discounted tangent.

    Args:
        dyn: the inner dynamics ``Φ`` (:func:`~hypergrad.dynamics.sgd`, :func:`~hypergrad.dynamics.adam`).
        lr: ``η_0 ≥ 0``.
        beta: the hyper-learning rate ``β_0 ≥ 0``.
        mu: the discount ``μ ∈ [0, 1]`` (fixed), or ``"auto"`` (Eq. 10, Appendix A).
        kappa: ``None`` keeps ``β`` fixed; a number ``κ ≥ 0`` adapts it (Section 4).
    """

    dyn: Dynamics
    lr: float
    beta: float
    mu: float | str
    kappa: float | None

    def __init__(self, dyn: Dynamics, lr: float = 0.01, beta: float = 1e-4,
                 mu: float | str = "auto", kappa: float | None = None):
        set_ = object.__setattr__
        set_(self, "dyn", dyn)
        set_(self, "lr", _check_number("lr", lr))
        set_(self, "beta", _check_number("beta", beta))
        if mu != "auto":
            mu = _check_number("mu", mu, 0.0, 1.0)
        set_(self, "mu", mu)
        set_(self, "kappa", None if kappa is None else _check_number("kappa", kappa))

    @property
    def adaptive_mu(self) -> bool:
        return self.mu == "auto"

    # ------------------------------------------------------------------ state
    def init(self, params: Params | State, buffers: Params | None = None) -> OnlineState:
        """``w_0`` (weights copied, optimizer slots zero), ``Z_0 = 0``, ``η_0``, ``β_0``."""
        state = self._init_state(params, buffers)
        return OnlineState(state, tree_zeros_like(state.w), self.lr, self.beta, 0.0, 0.0, 0.0,
                           None, 0)

    # ------------------------------------------------------------------ Algorithm 1
    def step(self, ostate: OnlineState, batch: Batch, objective: Callable
             ) -> tuple[OnlineState, StepInfo]:
        """One iteration ``t`` of Algorithm 1; ``objective(params)`` is ``E`` at this step.

        Raises :class:`~hypergrad.dynamics.DivergenceError` (naming ``t``) when ``E``, ``Δ_t``,
        ``η_t`` or ``L_t`` is not finite; ``ostate`` is left as it was.
        """
        new, info = self._step(ostate, batch, objective)
        check_finite(info.t, "the objective or its hypergradient", info.hypergradient, info.objective)
        check_finite(info.t, "the learning rate", info.lr)
        check_finite(info.t, "the training loss", info.loss)
        return new, info

    def _step(self, ostate: OnlineState, batch: Batch, objective: Callable
              ) -> tuple[OnlineState, StepInfo]:
        """The numbers of one step (no checks)."""
        state, Z, t = ostate.state, ostate.Z, ostate.t
        # 1. g = ∇E(θ(w_t)) on a validation minibatch; Δ_t = gᵀ θ(Z_t)   (Eq. 11);
        #    and p_t = gᵀ θ(B_{t-1}) for the adaptive μ (step 3)
        value, g = objective_value_and_grad(objective, state)
        delta = float(tree_dot(g, Z["params"]))
        p = float(tree_dot(g, ostate.B_prev)) if self.adaptive_mu and t >= 1 else None
        # 2.–3. β_t, η_t, μ_t, ρ_t
        lr, beta, mu, rho = self._hyper_update(ostate, delta, p)
        # 4. (w_{t+1}, Z_{t+1}) = (Φ_t(w_t, η_t), μ_t A_t Z_t + B_t)
        eta = as_lr(lr, next(iter(state.w["params"].values())), check=False)   # checked in step
        w_next, Z_next, B, (loss, bufs) = self.dyn.phi_jvp(
            state.w, eta, batch, state.aux, None if mu == 0.0 else tree_scale(Z, mu))
        new_state = State(w_next, self.dyn.next_aux(state.aux, bufs))
        B_prev = B["params"] if self.adaptive_mu else None
        info = StepInfo(t, lr, mu, beta, delta, float(loss), float(value))
        return OnlineState(new_state, Z_next, lr, beta, mu, rho, delta, B_prev, t + 1), info

    def _hyper_update(self, ostate: OnlineState, delta: float, p: float | None):
        """Steps 2 and 3: ``(η_t, β_t, μ_t, ρ_t)`` from ``Δ_t`` (and ``p_t`` for ``mu="auto"``)."""
        lr, beta, mu, rho = ostate.lr, ostate.beta, ostate.mu, ostate.rho
        if ostate.t >= 1:
            # 2. β_t = max(β_{t-1} + κ Δ_t Δ_{t-1}, 0);  η_t = max(η_{t-1} − β_t Δ_t, 0)
            if self.kappa is not None:
                beta = max(beta + self.kappa * delta * ostate.delta, 0.0)
            lr = max(lr - beta * delta, 0.0)
        # 3. μ_t: fixed, or Appendix A's rule (μ_0 = 0, ρ_0 = 0)
        if not self.adaptive_mu:
            mu = self.mu
        elif ostate.t >= 1:
            c = min(max(delta / p, 0.0), 1.0) if p != 0 else 0.0
            rho = (rho + 1.0) * mu
            mu = c ** (1.0 / (1.0 + rho))
        return lr, beta, mu, rho


class HD(Marthe):
    """Hypergradient descent (Baydin et al., 2018): :class:`Marthe` with ``μ = 0``.

    ``Δ_t = ∇E(w_t)ᵀ B_{t-1}`` (SGD: ``−∇E(w_t)ᵀ ∇L_{t-1}(w_{t-1})``, where ``∇L`` includes
    the weight-decay term ``λθ`` when the dynamics has one). The paper, and the book, take a
    validation loss as ``E``.

    With ``objective`` the training loss on step ``t``'s own minibatch (the one after step
    ``t-1``'s) this is Baydin et al.'s SGD-HD (clamped at 0) **only when that objective
    includes the weight-decay term** ``λ‖θ‖²/2``: their hypergradient is the product of two
    consecutive *decayed* gradients, ``η_t = η_{t-1} + β (∇L_t + λθ_t)ᵀ(∇L_{t-1} + λθ_{t-1})``.
    Without it, ``∇E`` lacks ``λθ_t`` and the rates differ (``tests/test_hd_baydin.py``
    checks both cases).
    """

    def __init__(self, dyn: Dynamics, lr: float = 0.01, beta: float = 1e-4,
                 kappa: float | None = None):
        super().__init__(dyn, lr, beta, mu=0.0, kappa=kappa)


class RTHO(Marthe):
    """Real-time hyperparameter optimisation (Franceschi et al., 2017): :class:`Marthe` with ``μ = 1``."""

    def __init__(self, dyn: Dynamics, lr: float = 0.01, beta: float = 1e-4,
                 kappa: float | None = None):
        super().__init__(dyn, lr, beta, mu=1.0, kappa=kappa)


@dataclass(frozen=True)
class FixedSchedule(_Tuner):
    """A given schedule ``η_t = schedule(t)`` (a callable, or a 1-D sequence or tensor), with
    the tuners' ``init``/``step`` contract: the baselines run through the same loops.

    ``step`` ignores ``objective`` (``E`` is not needed); its :class:`StepInfo` reports ``μ``,
    ``Δ`` and ``E`` as NaN and ``β`` as 0.
    """

    dyn: Dynamics
    schedule: Callable[[int], float] | Sequence[float] | torch.Tensor

    def lr_at(self, t: int) -> float:
        """``η_t``, checked (a clear error for a negative or non-finite value)."""
        s = self.schedule
        try:
            lr = float(s(t)) if callable(s) else float(s[t])
        except IndexError:
            raise ValueError(f"the schedule has no learning rate for step {t}") from None
        if not (lr >= 0 and math.isfinite(lr)):
            raise ValueError(f"the schedule gives an invalid learning rate at step {t}: {lr}")
        return lr

    def init(self, params: Params | State, buffers: Params | None = None) -> OnlineState:
        """``w_0`` and ``η_0``; no tangent."""
        state = self._init_state(params, buffers)
        return OnlineState(state, None, self.lr_at(0), 0.0, math.nan, 0.0, 0.0, None, 0)

    def step(self, ostate: OnlineState, batch: Batch, objective: Callable | None = None
             ) -> tuple[OnlineState, StepInfo]:
        """``w_{t+1} = Φ_t(w_t, η_t)``; raises on a non-finite training loss."""
        t, state = ostate.t, ostate.state
        lr = self.lr_at(t)
        eta = as_lr(lr, next(iter(state.w["params"].values())), check=False)
        w, (loss, bufs, _) = self.dyn.phi(state.w, eta, batch, state.aux)
        info = StepInfo(t, lr, math.nan, 0.0, math.nan, float(loss), math.nan)
        check_finite(t, "the training loss", info.loss)
        new = State(w, self.dyn.next_aux(state.aux, bufs))
        return ostate._replace(state=new, lr=lr, t=t + 1), info


#: the tuners by name, for :func:`make_tuner`
TUNERS = {"marthe": Marthe, "hd": HD, "rtho": RTHO, "fixed": FixedSchedule}


def make_tuner(name: str, dyn: Dynamics, **options) -> Marthe | FixedSchedule:
    """The tuner called ``name`` (``"marthe"``, ``"hd"``, ``"rtho"`` or ``"fixed"``) on ``dyn``.

    ``options`` go to its constructor: ``lr``, ``beta``, ``kappa`` (and ``mu`` for
    ``"marthe"``); ``schedule`` for ``"fixed"``. An option the tuner does not take is an error.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in TUNERS:
        raise ValueError(f"method must be one of {tuple(TUNERS)}, got {name!r}")
    if key == "fixed":
        if options.get("schedule") is None:
            raise ValueError("method='fixed' needs a schedule (a callable t -> lr or a tensor)")
        extra = set(options) - {"schedule"}
        if extra:
            raise ValueError(f"method='fixed' takes only a schedule, not {sorted(extra)}")
        return FixedSchedule(dyn, options["schedule"])
    if options.pop("schedule", None) is not None:
        raise ValueError(f"method={name!r} does not take a schedule")
    try:
        return TUNERS[key](dyn, **options)
    except TypeError as e:
        raise ValueError(f"method={name!r}: {e}") from None


# ---------------------------------------------------------------------- running a tuner
@dataclass
class History:
    """Per-step records of an online run (lists of floats, index ``t``)."""

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
        for name in ("lr", "mu", "beta", "hypergradient", "loss", "objective"):
            getattr(self, name).append(getattr(info, name))


def check_blowup(step: int, loss: float, first_loss: float, max_loss_ratio: float) -> None:
    """The blow-up rule: a run diverges when the training loss exceeds ``max_loss_ratio`` times
    its first value (raises :class:`~hypergrad.dynamics.DivergenceError` naming ``step``)."""
    if loss > max_loss_ratio * max(first_loss, 1e-12):
        raise DivergenceError(step, f"the training loss blew up ({loss:.3g} > "
                                    f"{max_loss_ratio} × {first_loss:.3g})", blowup=True)


def run_online(tuner: Marthe | FixedSchedule, params: Params | State, batches: Sequence,
               objectives: Callable | Sequence[Callable], *, max_loss_ratio: float = 10.0,
               ostate: OnlineState | None = None, callback: Callable | None = None
               ) -> tuple[OnlineState, History]:
    """Run ``tuner`` over ``batches``; ``objectives`` is one callable or one per step.

    A run *diverges* when a value is not finite or when the training loss exceeds
    ``max_loss_ratio`` times the first one (a blow-up): :class:`~hypergrad.dynamics.DivergenceError` names the step.
    """
    ostate = ostate or tuner.init(params)
    hist = History.empty()
    for i, batch in enumerate(batches):
        objective = objectives if callable(objectives) else objectives[i]
        ostate, info = tuner.step(ostate, batch, objective)
        hist.append(info)
        check_blowup(info.t, info.loss, hist.loss[0], max_loss_ratio)
        if callback is not None:
            callback(ostate, info)
    return ostate, hist


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
