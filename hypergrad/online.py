r"""Online schedules: HD, RTHO and MARTHE as one algorithm (the paper's Algorithm 1).

MARTHE keeps one state-sized tangent, the discounted accumulation of Eq. 9,

.. math::

    Z_{t+1} = μ_t A_t Z_t + B_t, \qquad Z_0 = 0,

and moves the learning rate along the online hypergradient estimate of Eq. 11,

.. math::

    Δ_t = ∇E(θ(w_t))^\top θ(Z_t), \qquad η_t = \max(η_{t-1} − β_t Δ_t, 0).

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
:func:`make_tuner` builds one by name and :func:`hypergrad.loop.run_online` runs any of them. A
step computes its numbers first and checks them after (:func:`~hypergrad.dynamics.check_finite`);
the one blow-up rule of a run is :func:`hypergrad.loop.check_blowup`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from hypergrad.dynamics import (
    Batch,
    Dynamics,
    Params,
    State,
    as_lr,
    check_finite,
    objective_value_and_grad,
)
from hypergrad.tree import tree_dot, tree_scale, tree_zeros_like

__all__ = ["Marthe", "HD", "RTHO", "FixedSchedule", "make_tuner", "TUNERS", "OnlineState",
           "StepInfo", "state_spec"]


class OnlineState(NamedTuple):
    """Everything Algorithm 1 carries from step ``t-1`` to step ``t``.

    ``state`` is ``w_t``; ``Z`` is ``Z_t`` (shaped like ``state.w``); ``lr``, ``beta``, ``mu``,
    ``rho`` and ``delta`` are ``η_{t-1}``, ``β_{t-1}``, ``μ_{t-1}``, ``ρ_{t-1}`` and
    ``Δ_{t-1}`` (at ``t = 0``: ``η_0``, ``β_0``, 0, 0, 0), 0-dim tensors on the weights' device
    (float64 there, like the Python floats they replace; float32 on ``mps``); ``B_prev`` is
    ``θ(B_{t-1})`` (kept only for ``mu="auto"``); ``t`` is the step index. A
    :class:`FixedSchedule` keeps no tangent (``Z = None``). ``spec`` is what the state was made
    with (:func:`state_spec`): a tuner refuses a state whose ``spec`` differs from its own.
    """

    state: State
    Z: dict | None
    lr: torch.Tensor
    beta: torch.Tensor
    mu: torch.Tensor
    rho: torch.Tensor
    delta: torch.Tensor
    B_prev: Params | None
    t: int
    spec: dict | None = None


class StepInfo(NamedTuple):
    """What step ``t`` used: ``η_t``, ``μ_t``, ``β_t``, ``Δ_t``, ``L_t(w_t)`` and ``E(w_t)``
    (0-dim tensors: reading one as a number synchronises with the device; :class:`~hypergrad.loop.History`
    converts a whole run at once)."""

    t: int
    lr: torch.Tensor
    mu: torch.Tensor
    beta: torch.Tensor
    hypergradient: torch.Tensor
    loss: torch.Tensor
    objective: torch.Tensor

    def __eq__(self, other) -> bool:
        """Field by field, NaN equal to NaN (as the Python floats ``math.nan`` were)."""
        if not isinstance(other, tuple) or len(other) != len(self):
            return NotImplemented
        return all(_same(a, b) for a, b in zip(self, other, strict=True))

    def __ne__(self, other) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = tuple.__hash__


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        a, b = torch.as_tensor(a), torch.as_tensor(b)
        return bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())
    return a == b


def hyper_dtype(device: torch.device) -> torch.dtype:
    """The dtype of the online scalars (η, β, μ, ρ, Δ): float64 (as Python floats were),
    float32 on a device without float64 (``mps``)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def _scalar(x, like: torch.Tensor) -> torch.Tensor:
    """``x`` as a 0-dim online scalar on ``like``'s device (no copy, no sync if it is one)."""
    return torch.as_tensor(x, dtype=hyper_dtype(like.device), device=like.device)


def _check_number(name: str, value, lo: float = 0.0, hi: float = math.inf) -> float:
    """A finite number in ``[lo, hi]`` (inf and NaN are rejected, naming ``name``)."""
    try:
        x = float(value)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not (lo <= x <= hi and math.isfinite(x)):  # also rejects NaN and inf
        interval = f"[{lo}, {hi}]" if hi < math.inf else f">= {lo}"
        raise ValueError(f"{name} must be a finite number {interval}, got {value!r}")
    return x


def state_spec(kind: str, dyn: Dynamics, state: State) -> dict:
    """What an online state is made with: the tuner kind (``"schedule"``, ``"tangent"``,
    ``"tangent+auto-mu"``), the dynamics (name and hyperparameters), the weights' names,
    shapes and dtype."""
    theta = state.w["params"]
    return {"tuner": kind, "dynamics": dyn.name, "hyperparams": dict(dyn.hyperparams),
            "params": {n: tuple(p.shape) for n, p in theta.items()},
            "dtype": str(next(iter(theta.values())).dtype)}


def _spec_mismatch(mine: dict, theirs: dict | None, state: State | None = None) -> str | None:
    """A description of the first difference between two specs (and between ``theirs`` and
    the state's actual weights), or None."""
    if theirs is None:
        return None                     # a state made before specs existed: nothing to compare
    for key in ("tuner", "dynamics", "hyperparams", "dtype", "params"):
        if key in mine and mine[key] != theirs.get(key):
            return f"{key}: the state has {theirs.get(key)!r}, this tuner {mine[key]!r}"
    if state is not None:
        actual = {n: tuple(p.shape) for n, p in state.w["params"].items()}
        if actual != theirs.get("params"):
            return f"params: the state's weights have shapes {actual}, its record says {theirs.get('params')}"
        dtypes = {str(p.dtype) for p in state.w["params"].values()}
        if dtypes != {theirs.get("dtype")}:
            return f"dtype: the state's weights are {sorted(dtypes)}, its record says {theirs.get('dtype')!r}"
    return None


class _hybridmethod:
    """A method callable on the class (no tuner to compare with) or on an instance."""

    def __init__(self, fn):
        self.fn = fn

    def __get__(self, obj, cls):
        return lambda *a, **k: self.fn(obj, *a, **k)


class _Tuner:
    """What every tuner shares: ``θ(w_t)``, the state's record, saving/restoring an
    :class:`OnlineState`."""

    dyn: Dynamics
    kind: str = "tangent"

    @staticmethod
    def params(ostate: OnlineState) -> Params:
        """``θ(w_t)``."""
        return ostate.state.w["params"]

    @staticmethod
    def state_dict(ostate: OnlineState) -> dict[str, Any]:
        """A plain dict (for ``torch.save``); :meth:`load_state_dict` restores it exactly."""
        return {"format": "hypergrad.OnlineState/2", **ostate._asdict(),
                "state": ostate.state._asdict()}

    @_hybridmethod
    def load_state_dict(self, d: dict[str, Any]) -> OnlineState:
        """The :class:`OnlineState` saved by :meth:`state_dict` (checked by its format tag).

        Called on a tuner, the state is also checked against it (dynamics, hyperparameters,
        weights' names, shapes and dtype): a mismatch is a ``ValueError`` naming it, raised
        before anything is returned. Format 1 (floats) is read too.
        """
        fmt = d.get("format") if isinstance(d, dict) else None
        if fmt not in ("hypergrad.OnlineState/1", "hypergrad.OnlineState/2"):
            raise ValueError("not a hypergrad online state (missing or unknown 'format')")
        try:
            fields = {k: d[k] for k in OnlineState._fields if k != "spec"}
            fields["spec"] = d.get("spec")
            state = State(**d["state"])
            like = next(iter(state.w["params"].values()))
            fields["state"] = state
            for k in ("lr", "beta", "mu", "rho", "delta"):
                fields[k] = _scalar(fields[k], like)
        except (KeyError, TypeError, ValueError, StopIteration, AttributeError, RuntimeError) as e:
            raise ValueError(f"a truncated or foreign online state: {e!r}") from None
        ostate = OnlineState(**fields)
        if self is not None:
            self.check_state(ostate, where="load_state_dict")
        else:
            bad = _spec_mismatch({}, ostate.spec, ostate.state)
            if bad:
                raise ValueError(f"load_state_dict: an inconsistent online state ({bad})")
        return ostate

    def check_state(self, ostate: OnlineState, where: str = "step") -> None:
        """Refuse (``ValueError`` naming the mismatch) a state made with something else."""
        if ostate.spec is None:
            return
        mine = state_spec(self.kind, self.dyn, ostate.state)
        mine.pop("params"), mine.pop("dtype")      # the state's own: checked against its record
        bad = _spec_mismatch(mine, ostate.spec, ostate.state)
        if bad:
            raise ValueError(f"{where}: this online state was made with something else ({bad})")

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
        clip: ``None`` (the paper), or a number ``c > 0``: ``Δ_t`` is clipped to ``[−c, c]``
            before it moves ``η``, ``β`` and ``μ``, as the authors' TensorFlow release does
            (``c = 100`` there: ``clip_value`` of ``Marthe.compute_gradients`` in
            ``lucfra/Marthe-TF``, ``marthe/marthe_alg.py``).

    All numbers must be finite. The step runs on the weights' device with tensor operations
    only (no host synchronisation) unless asked to check (``step(..., check=True)``, the
    default). HD (``μ = 0`` fixed) never computes a Hessian-vector product.
    """

    dyn: Dynamics
    lr: float
    beta: float
    mu: float | str
    kappa: float | None
    clip: float | None

    def __init__(self, dyn: Dynamics, lr: float = 0.01, beta: float = 1e-4,
                 mu: float | str = "auto", kappa: float | None = None,
                 clip: float | None = None):
        set_ = object.__setattr__
        set_(self, "dyn", dyn)
        set_(self, "lr", _check_number("lr", lr))
        set_(self, "beta", _check_number("beta", beta))
        if not (isinstance(mu, str) and mu == "auto"):
            mu = _check_number("mu", mu, 0.0, 1.0)
        set_(self, "mu", mu)
        set_(self, "kappa", None if kappa is None else _check_number("kappa", kappa))
        if clip is not None and _check_number("clip", clip) == 0:
            raise ValueError("clip must be a finite number > 0 (or None), got 0")
        set_(self, "clip", None if clip is None else float(clip))

    @property
    def adaptive_mu(self) -> bool:
        return self.mu == "auto"

    @property
    def kind(self) -> str:
        """``"tangent"``, or ``"tangent+auto-mu"`` with ``mu="auto"`` (see :func:`state_spec`)."""
        return "tangent+auto-mu" if self.adaptive_mu else "tangent"

    @property
    def needs_hvp(self) -> bool:
        """Whether a step forms ``A_t Z_t``; False for HD (``μ = 0`` fixed), which never does."""
        return self.adaptive_mu or self.mu != 0.0

    # ------------------------------------------------------------------ state
    def init(self, params: Params | State, buffers: Params | None = None) -> OnlineState:
        """``w_0`` (weights copied, optimizer slots zero), ``Z_0 = 0``, ``η_0``, ``β_0``."""
        state = self._init_state(params, buffers)
        like = next(iter(state.w["params"].values()))
        s = lambda x: _scalar(x, like)  # noqa: E731
        return OnlineState(state, tree_zeros_like(state.w), s(self.lr), s(self.beta), s(0.0),
                           s(0.0), s(0.0), None, 0, state_spec(self.kind, self.dyn, state))

    # ------------------------------------------------------------------ Algorithm 1
    def step(self, ostate: OnlineState, batch: Batch, objective: Callable, *, check: bool = True
             ) -> tuple[OnlineState, StepInfo]:
        """One iteration ``t`` of Algorithm 1; ``objective(params)`` is ``E`` at this step.

        With ``check`` (the default) raises :class:`~hypergrad.dynamics.DivergenceError`
        (naming ``t``) when ``E``, ``Δ_t``, ``η_t`` or ``L_t`` is not finite, which reads
        them on the host (one synchronisation); ``ostate`` is left as it was. With
        ``check=False`` the step makes no host synchronisation at all; :meth:`failure` gives
        the same verdict as a device tensor (what :func:`~hypergrad.loop.run_online` records).
        """
        self.check_state(ostate)
        new, info = self._step(ostate, batch, objective)
        if check:
            check_finite(info.t, "the objective or its hypergradient", info.hypergradient, info.objective)
            check_finite(info.t, "the learning rate", info.lr)
            check_finite(info.t, "the training loss", info.loss)
        return new, info

    #: the reasons :meth:`failure` codes (code ``i`` is ``FAILURES[i]``); 4 is the blow-up rule
    FAILURES = (None, "the objective or its hypergradient", "the learning rate", "the training loss",
                "the training loss blew up")

    @staticmethod
    def failure(info: StepInfo) -> torch.Tensor:
        """The first non-finite quantity of a step as a device integer: 0 none, 1 ``E`` or
        ``Δ_t``, 2 ``η_t``, 3 ``L_t`` (the order :meth:`step` checks them in); no sync."""
        fin = torch.isfinite
        return torch.where(~(fin(info.hypergradient) & fin(info.objective)), 1,
                           torch.where(~fin(info.lr), 2, torch.where(~fin(info.loss), 3, 0)))

    def _step(self, ostate: OnlineState, batch: Batch, objective: Callable
              ) -> tuple[OnlineState, StepInfo]:
        """The numbers of one step (no checks, no host synchronisation)."""
        state, Z, t = ostate.state, ostate.Z, ostate.t
        like = next(iter(state.w["params"].values()))
        # 1. g = ∇E(θ(w_t)) on a validation minibatch; Δ_t = gᵀ θ(Z_t)   (Eq. 11);
        #    and p_t = gᵀ θ(B_{t-1}) for the adaptive μ (step 3)
        value, g = objective_value_and_grad(objective, state)
        delta = _scalar(tree_dot(g, Z["params"]), like)
        if self.clip is not None:            # the authors' release clips Δ_t at ±100
            delta = torch.clamp(delta, -self.clip, self.clip)
        p = _scalar(tree_dot(g, ostate.B_prev), like) if self.adaptive_mu and t >= 1 else None
        # 2.–3. β_t, η_t, μ_t, ρ_t
        lr, beta, mu, rho = self._hyper_update(ostate, delta, p)
        # 4. (w_{t+1}, Z_{t+1}) = (Φ_t(w_t, η_t), μ_t A_t Z_t + B_t); HD, and μ_0 = 0 of the
        #    adaptive rule, need no Hessian-vector product (known before the step)
        eta = lr.to(like.dtype)
        skip = not self.needs_hvp or (self.adaptive_mu and t == 0)
        dw = None if skip else tree_scale(Z, mu.to(like.dtype))
        w_next, Z_next, B, (loss, bufs) = self.dyn.phi_jvp(state.w, eta, batch, state.aux, dw,
                                                           need_B=self.adaptive_mu)
        new_state = State(w_next, self.dyn.next_aux(state.aux, bufs))
        B_prev = B["params"] if self.adaptive_mu else None
        info = StepInfo(t, lr, mu, beta, delta, loss.detach(), value.detach())
        return OnlineState(new_state, Z_next, lr, beta, mu, rho, delta, B_prev, t + 1,
                           ostate.spec), info

    def _hyper_update(self, ostate: OnlineState, delta: torch.Tensor, p: torch.Tensor | None):
        """Steps 2 and 3: ``(η_t, β_t, μ_t, ρ_t)`` from ``Δ_t`` (and ``p_t`` for ``mu="auto"``),
        with tensor operations only (``clamp``, ``where``)."""
        like = delta
        lr, beta = _scalar(ostate.lr, like), _scalar(ostate.beta, like)
        mu, rho = _scalar(ostate.mu, like), _scalar(ostate.rho, like)
        if ostate.t >= 1:
            # 2. β_t = max(β_{t-1} + κ Δ_t Δ_{t-1}, 0);  η_t = max(η_{t-1} − β_t Δ_t, 0)
            if self.kappa is not None:
                beta = torch.clamp(beta + self.kappa * delta * _scalar(ostate.delta, like), min=0.0)
            lr = torch.clamp(lr - beta * delta, min=0.0)
        # 3. μ_t: fixed, or Appendix A's rule (μ_0 = 0, ρ_0 = 0); c = clip(Δ_t/p_t, 0, 1), 0 at p_t = 0
        if not self.adaptive_mu:
            mu = _scalar(self.mu, like)
        elif ostate.t >= 1:
            nz = p != 0
            c = torch.where(nz, torch.clamp(delta / torch.where(nz, p, torch.ones_like(p)), 0.0, 1.0),
                            torch.zeros_like(p))
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
                 kappa: float | None = None, clip: float | None = None):
        super().__init__(dyn, lr, beta, mu=0.0, kappa=kappa, clip=clip)


class RTHO(Marthe):
    """Real-time hyperparameter optimisation (Franceschi et al., 2017): :class:`Marthe` with ``μ = 1``."""

    def __init__(self, dyn: Dynamics, lr: float = 0.01, beta: float = 1e-4,
                 kappa: float | None = None, clip: float | None = None):
        super().__init__(dyn, lr, beta, mu=1.0, kappa=kappa, clip=clip)


@dataclass(frozen=True)
class FixedSchedule(_Tuner):
    """A given schedule ``η_t = schedule(t)`` (a callable, or a 1-D sequence or tensor), with
    the tuners' ``init``/``step`` contract: the baselines run through the same loops.

    ``step`` ignores ``objective`` (``E`` is not needed); its :class:`StepInfo` reports ``μ``,
    ``Δ`` and ``E`` as NaN and ``β`` as 0. Each ``η_t`` is read and checked on the host.
    """

    dyn: Dynamics
    schedule: Callable[[int], float] | Sequence[float] | torch.Tensor
    kind = "schedule"

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
        like = next(iter(state.w["params"].values()))
        s = lambda x: _scalar(x, like)  # noqa: E731
        return OnlineState(state, None, s(self.lr_at(0)), s(0.0), s(math.nan), s(0.0), s(0.0),
                           None, 0, state_spec(self.kind, self.dyn, state))

    def step(self, ostate: OnlineState, batch: Batch, objective: Callable | None = None, *,
             check: bool = True) -> tuple[OnlineState, StepInfo]:
        """``w_{t+1} = Φ_t(w_t, η_t)``; with ``check``, raises on a non-finite training loss."""
        self.check_state(ostate)
        t, state = ostate.t, ostate.state
        like = next(iter(state.w["params"].values()))
        lr = self.lr_at(t)
        eta = as_lr(lr, like, check=False)
        w, (loss, bufs, _) = self.dyn.phi(state.w, eta, batch, state.aux)
        nan = _scalar(math.nan, like)
        info = StepInfo(t, _scalar(lr, like), nan, _scalar(0.0, like), nan, loss.detach(), nan)
        if check:
            check_finite(t, "the training loss", info.loss)
        new = State(w, self.dyn.next_aux(state.aux, bufs))
        return ostate._replace(state=new, lr=info.lr, t=t + 1), info

    FAILURES = Marthe.FAILURES

    @staticmethod
    def failure(info: StepInfo) -> torch.Tensor:
        """3 when the training loss is not finite, else 0 (a device integer; no sync)."""
        return torch.where(torch.isfinite(info.loss), 0, 3)


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
