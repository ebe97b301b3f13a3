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

Step 4 of Algorithm 1 is one forward-mode call, ``jvp(Φ_t, (w_t, η_t), (μ_t Z_t, 1))``, which
returns ``w_{t+1}`` and ``Z_{t+1}`` together, at the *current* ``η_t``, for any dynamics
(``tangent="jvp"``). The default ``tangent="hvp"`` computes the same two quantities from
``(∇L_t, ∇²L_t θ(μ_t Z_t))`` and a ``jvp`` of the cheap elementwise update, and skips the
Hessian-vector product whenever ``μ_t = 0``; the tests check both paths agree to 1e-10.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch.func import jvp, vmap

from hypergrad.dynamics import (
    Batch,
    DivergenceError,
    Dynamics,
    Params,
    State,
    as_lr,
    tree_dot,
    tree_scale,
    tree_zeros_like,
)
from hypergrad.hypergradient import _call_objective, objective_value_and_grad

__all__ = ["Marthe", "HD", "RTHO", "OnlineState", "StepInfo", "History", "run_online",
           "select_hyper_lr", "default_hvp_mode"]


class OnlineState(NamedTuple):
    """Everything Algorithm 1 carries from step ``t-1`` to step ``t``.

    ``state`` is ``w_t``; ``Z`` is ``Z_t`` (shaped like ``state.w``); ``lr``, ``beta``, ``mu``,
    ``rho`` and ``delta`` are ``η_{t-1}``, ``β_{t-1}``, ``μ_{t-1}``, ``ρ_{t-1}`` and
    ``Δ_{t-1}`` (at ``t = 0``: ``η_0``, ``β_0``, 0, 0, 0); ``B_prev`` is ``θ(B_{t-1})`` (kept
    only for ``mu="auto"``); ``t`` is the step index.
    """

    state: State
    Z: dict
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


def default_hvp_mode(device: torch.device | str) -> str:
    """The Hessian-vector product used by default on ``device``: ``"rev"`` or ``"fwd"``.

    Measured by ``benchmarks/bench_online.py`` on the CPU: reverse-over-reverse (double
    backward) beats forward-over-reverse on the paper's MLP (about 15 %) and by 6x on a small
    CNN (forward-mode convolutions are slow on the CPU). No GPU was available to measure CUDA;
    it gets the same default until a measurement says otherwise.
    """
    return "rev"


def _check_number(name: str, value, lo: float = 0.0, hi: float = math.inf) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not (lo <= x <= hi):  # also rejects NaN
        interval = f"[{lo}, {hi}]" if hi < math.inf else f">= {lo}"
        raise ValueError(f"{name} must be {interval}, got {value!r}")
    return x


@dataclass(frozen=True, init=False)
class Marthe:
    """MARTHE (Algorithm 1): online learning-rate schedule by a discounted tangent.

    Args:
        dyn: the inner dynamics ``Φ`` (:func:`~hypergrad.dynamics.sgd`, :func:`~hypergrad.dynamics.adam`).
        lr: ``η_0 ≥ 0``.
        beta: the hyper-learning rate ``β_0 ≥ 0``.
        mu: the discount ``μ ∈ [0, 1]`` (fixed), or ``"auto"`` (Eq. 10, Appendix A).
        kappa: ``None`` keeps ``β`` fixed; a number ``κ ≥ 0`` adapts it (Section 4).
        tangent: ``"hvp"`` (default, fast path) or ``"jvp"`` (the one-call general path).
        hvp: ``"fwd"`` or ``"rev"`` Hessian-vector products for ``tangent="hvp"``
            (default: :func:`default_hvp_mode` for the weights' device).
        estimator: how ``Δ_t`` (and ``p_t``) are formed from ``E``: ``"grad"`` (``∇E`` by
            reverse mode, then dot products) or ``"jvp"`` (forward-mode directional
            derivatives). Equal up to rounding.
    """

    dyn: Dynamics
    lr: float
    beta: float
    mu: float | str
    kappa: float | None
    tangent: str
    hvp: str | None
    estimator: str

    def __init__(self, dyn: Dynamics, lr: float = 0.01, beta: float = 1e-4,
                 mu: float | str = "auto", kappa: float | None = None, *,
                 tangent: str = "hvp", hvp: str | None = None, estimator: str = "grad"):
        set_ = object.__setattr__
        set_(self, "dyn", dyn)
        set_(self, "lr", _check_number("lr", lr))
        set_(self, "beta", _check_number("beta", beta))
        if mu != "auto":
            mu = _check_number("mu", mu, 0.0, 1.0)
        set_(self, "mu", mu)
        set_(self, "kappa", None if kappa is None else _check_number("kappa", kappa))
        if tangent not in ("hvp", "jvp"):
            raise ValueError(f"tangent must be 'hvp' or 'jvp', got {tangent!r}")
        if hvp not in (None, "fwd", "rev"):
            raise ValueError(f"hvp must be None, 'fwd' or 'rev', got {hvp!r}")
        if estimator not in ("grad", "jvp"):
            raise ValueError(f"estimator must be 'grad' or 'jvp', got {estimator!r}")
        set_(self, "tangent", tangent)
        set_(self, "hvp", hvp)
        set_(self, "estimator", estimator)

    @property
    def adaptive_mu(self) -> bool:
        return self.mu == "auto"

    # ------------------------------------------------------------------ state
    def init(self, params: Params | State, buffers: Params | None = None) -> OnlineState:
        """``w_0`` (weights copied, optimizer slots zero), ``Z_0 = 0``, ``η_0``, ``β_0``."""
        state = params if isinstance(params, State) else self.dyn.init(params, buffers)
        return OnlineState(state, tree_zeros_like(state.w), self.lr, self.beta, 0.0, 0.0, 0.0,
                           None, 0)

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

    # ------------------------------------------------------------------ Algorithm 1
    def step(self, ostate: OnlineState, batch: Batch, objective: Callable
             ) -> tuple[OnlineState, StepInfo]:
        """One iteration ``t`` of Algorithm 1; ``objective(params)`` is ``E`` at this step.

        Raises :class:`~hypergrad.dynamics.DivergenceError` (naming ``t``) when ``E``, ``L_t``, ``Δ_t`` or ``η_t``
        is not finite.
        """
        state, Z, t = ostate.state, ostate.Z, ostate.t
        # 1. g = ∇E(θ(w_t)) on a validation minibatch; Δ_t = gᵀ θ(Z_t)   (Eq. 11);
        #    and p_t = gᵀ θ(B_{t-1}) for the adaptive μ (step 3)
        need_p = self.adaptive_mu and t >= 1
        value, delta, p = self._estimates(objective, state, Z["params"],
                                          ostate.B_prev if need_p else None)
        if not (math.isfinite(delta) and math.isfinite(float(value))):
            raise DivergenceError(t, "the objective or its hypergradient")
        lr, beta, mu, rho = ostate.lr, ostate.beta, ostate.mu, ostate.rho
        if t >= 1:
            # 2. β_t = max(β_{t-1} + κ Δ_t Δ_{t-1}, 0);  η_t = max(η_{t-1} − β_t Δ_t, 0)
            if self.kappa is not None:
                beta = max(beta + self.kappa * delta * ostate.delta, 0.0)
            lr = max(lr - beta * delta, 0.0)
            if not math.isfinite(lr):
                raise DivergenceError(t, "the learning rate")
        # 3. μ_t: fixed, or Appendix A's rule (μ_0 = 0, ρ_0 = 0)
        if not self.adaptive_mu:
            mu = self.mu
        elif t >= 1:
            c = min(max(delta / p, 0.0), 1.0) if p != 0 else 0.0
            rho = (rho + 1.0) * mu
            mu = c ** (1.0 / (1.0 + rho))
        # 4. (w_{t+1}, Z_{t+1}) = (Φ_t(w_t, η_t), μ_t A_t Z_t + B_t)
        w_next, Z_next, loss, bufs, B = self._advance(state, Z, lr, mu, batch)
        if not math.isfinite(float(loss)):
            raise DivergenceError(t, "the training loss")
        new_state = State(w_next, self.dyn.next_aux(state.aux, bufs))
        B_prev = B["params"] if self.adaptive_mu else None
        info = StepInfo(t, lr, mu, beta, delta, float(loss), float(value))
        return OnlineState(new_state, Z_next, lr, beta, mu, rho, delta, B_prev, t + 1), info

    def _estimates(self, objective: Callable, state: State, Z: Params, B_prev: Params | None):
        """``(E(w_t), Δ_t = ∇E(w_t)ᵀθ(Z_t), p_t = ∇E(w_t)ᵀθ(B_{t-1}) or None)`` as floats.

        ``estimator="grad"`` forms ``∇E`` by reverse mode and takes dot products;
        ``estimator="jvp"`` computes the directional derivatives by forward mode (one lane
        per direction) without forming ``∇E``.
        """
        if self.estimator == "grad":
            value, g = objective_value_and_grad(objective, state, eager=self.tangent == "hvp")
            p = None if B_prev is None else float(tree_dot(g, B_prev))
            return float(value), float(tree_dot(g, Z)), p
        f = _call_objective(objective, state)
        theta = state.w["params"]
        if B_prev is None:
            value, delta = jvp(f, (theta,), (Z,))
            return float(value), float(delta), None
        dirs = {k: torch.stack([Z[k], B_prev[k]]) for k in Z}
        value, d = vmap(lambda v: jvp(f, (theta,), (v,)), out_dims=(None, 0))(dirs)
        return float(value), float(d[0]), float(d[1])

    def _advance(self, state: State, Z: dict, lr: float, mu: float, batch):
        """Step 4: ``(w_{t+1}, Z_{t+1}, L_t, new buffers, B_t)`` at the current ``η_t``."""
        dyn, w, aux = self.dyn, state.w, state.aux
        eta = as_lr(lr, next(iter(w["params"].values())), check=False)   # checked in step
        one = torch.ones_like(eta)
        if self.tangent == "jvp":     # the general path: ONE jvp of Φ_t
            w_next, Z_next, (loss, bufs, g) = jvp(
                lambda w_, lr_: dyn.phi(w_, lr_, batch, aux), (w, eta), (tree_scale(Z, mu), one),
                has_aux=True)
            B = dyn.lr_derivative(w, g, eta, aux["step"]) if self.adaptive_mu else None
            return w_next, Z_next, loss, bufs, B
        # the fast path: (∇L, ∇²L θ(μZ)), then one jvp of the elementwise update U
        if mu == 0.0:                 # HD, or a reset: Z_{t+1} = B_t, no Hessian needed
            g, _, (loss, bufs) = dyn.grad_eager(w["params"], batch, aux)
            w_next, Z_next, B = dyn.update_tangent(w, g, eta, aux["step"])
            return w_next, Z_next, loss, bufs, B
        Zmu = tree_scale(Z, mu)
        mode = self.hvp or default_hvp_mode(eta.device)
        g, hv, (loss, bufs) = dyn.grad_and_hvp(w["params"], Zmu["params"], batch, aux, mode)
        w_next, Z_next, B = dyn.update_tangent(w, g, eta, aux["step"], Zmu, hv)
        return w_next, Z_next, loss, bufs, B


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
                 kappa: float | None = None, **kw):
        super().__init__(dyn, lr, beta, mu=0.0, kappa=kappa, **kw)


class RTHO(Marthe):
    """Real-time hyperparameter optimisation (Franceschi et al., 2017): :class:`Marthe` with ``μ = 1``."""

    def __init__(self, dyn: Dynamics, lr: float = 0.01, beta: float = 1e-4,
                 kappa: float | None = None, **kw):
        super().__init__(dyn, lr, beta, mu=1.0, kappa=kappa, **kw)


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


def run_online(tuner: Marthe, params: Params | State, batches: Sequence,
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
        if info.loss > max_loss_ratio * max(hist.loss[0], 1e-12):
            raise DivergenceError(info.t, f"the training loss blew up ({info.loss:.3g} > "
                                          f"{max_loss_ratio} × {hist.loss[0]:.3g})", blowup=True)
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
