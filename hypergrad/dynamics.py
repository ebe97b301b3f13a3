"""Inner optimisation dynamics Φ as pure functions (the paper's Eq. 1 constraint).

A training run is the recursion ``w_{t+1} = Φ_t(w_t, η_t)``, ``t = 0 … T-1``. Here ``w`` is
the optimizer *state*: the weights ``θ(w)`` plus whatever the optimizer carries (a momentum
buffer, Adam's moments). Every dynamics is written as two small pure pieces, in the manner
of optax:

* a gradient oracle, ``g = ∇L_t(θ)`` on minibatch ``t`` (:meth:`Dynamics.grad`), and
* an elementwise update ``w' = U(w, g, η, k)`` with ``k`` the number of steps already taken,

so that ``Φ_t(w, η) = U(w, ∇L_t(θ(w)), η, t)`` (:meth:`Dynamics.phi`). Both pieces are
differentiable in the state and in the learning rate, by ``torch.func`` and by autograd, which
is all that the exact and the online hypergradients need (``A_t = ∂Φ_t/∂w``,
``B_t = ∂Φ_t/∂η``). :meth:`Dynamics.phi_jvp` is Algorithm 1's step 4,
``(Φ_t(w, η), A_t ẇ + B_t)``; an optimizer may give the tangent of its update by hand
(``update_jvp``, tested equal to autodiff). The derivatives themselves are computed in
``hypergrad._autodiff``, one way each.

The update rules follow ``torch.optim.SGD`` (momentum, Nesterov, coupled weight decay) and
``torch.optim.Adam`` (eps outside the square root, bias correction with the step count, coupled
weight decay); the tests check 20-step trajectories against ``torch.optim`` in float64.

Non-differentiated state (the step count and BatchNorm's running statistics) lives apart, in
``State.aux``: it changes along the trajectory, but nothing is differentiated through it
(as in PyTorch, where running statistics are updated from detached batch statistics).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch.func import jvp

from hypergrad import _autodiff, _checks
from hypergrad._autodiff import is_transformed as _is_transformed
from hypergrad.tree import tree_map, tree_zeros_like

Params = dict[str, torch.Tensor]
#: A minibatch — whatever the loss takes (``(x, y)`` for the models here, ``None`` for test functions).
Batch = Any


class State(NamedTuple):
    """Optimizer state ``w``: ``w`` is differentiated, ``aux`` is not.

    ``w = {"params": θ, <slot>: {...}, ...}``; ``aux = {"step": k, "buffers": {...} or None}``.
    """

    w: dict[str, Params]
    aux: dict[str, Any]


class DivergenceError(FloatingPointError):
    """A run produced NaN or inf; ``step`` is the 0-indexed step ``t`` at which it was seen."""

    def __init__(self, step: int, what: str, blowup: bool = False):
        reason = what if blowup else f"{what} is not finite"
        super().__init__(f"diverged at step {step}: {reason} "
                         f"(lower the learning rate or the hyper-learning rate)")
        self.step, self.reason = step, reason


def as_lr(lr: float | torch.Tensor, like: torch.Tensor, check: bool = True) -> torch.Tensor:
    """A learning rate as a 0-dim tensor with the weights' dtype and device.

    With ``check``, a negative or non-finite value is rejected (one device sync for a tensor).
    """
    if check:
        _checks.check_lr(lr)
    lr = torch.as_tensor(lr, dtype=like.dtype, device=like.device)
    if lr.ndim != 0:
        raise ValueError(f"a learning rate must be a scalar, got shape {tuple(lr.shape)}")
    if check and not _is_transformed(lr) and not (math.isfinite(v := float(lr)) and v >= 0):
        raise ValueError(f"a learning rate must be finite and >= 0, got {v}")
    return lr


# --------------------------------------------------------------------------- dynamics
Update = Callable[[dict, Params, torch.Tensor, int], dict]


@dataclass(frozen=True)
class Dynamics:
    """An optimizer as a pure map ``Φ_t(w, η) = U(w, ∇L_t(θ(w)), η, t)``.

    Build one with :func:`sgd` or :func:`adam`. ``loss(params, batch) -> scalar``; for a
    model with buffers (BatchNorm), ``init(params, buffers)`` and then
    ``loss(params, batch, buffers) -> (scalar, new_buffers)``.
    """

    name: str
    loss: Callable
    slots: tuple[str, ...]
    update: Update
    hyperparams: dict = field(default_factory=dict)
    #: optional hand-derived tangent of ``update`` (a faster specialised path), mapping
    #: ``(w, g, η, k, ẇ, ġ)`` to ``(U, ∂U/∂w·ẇ + ∂U/∂g·ġ + ∂U/∂η, ∂U/∂η)``; ``ẇ = ġ = None``
    #: mean zero. The tests check it against autodiff of ``update``.
    update_jvp: Callable | None = None

    # -- state
    def init(self, params: Params, buffers: Params | None = None) -> State:
        """``w_0``: the weights (copied) and zero optimizer slots."""
        params = _checks.check_params(params)
        if buffers and not isinstance(buffers, dict):
            raise TypeError(f"buffers must be a dict {{name: tensor}} or None, got "
                            f"{type(buffers).__name__}")
        theta = {k: v.detach().clone() for k, v in params.items()}
        w = {"params": theta, **{s: tree_zeros_like(theta) for s in self.slots}}
        bufs = {k: v.detach().clone() for k, v in buffers.items()} if buffers else None
        return State(w, {"step": 0, "buffers": bufs})

    @staticmethod
    def params(state: State) -> Params:
        """``θ(w)``: the weights part of the state."""
        return state.w["params"]

    # -- the map Φ_t and its pieces
    def loss_and_buffers(self, theta: Params, batch: Batch, aux: dict
                         ) -> tuple[torch.Tensor, Params]:
        """``(L_t(θ), new buffers or {})``: the loss called with or without buffers."""
        bufs = aux["buffers"]
        what = f"the training loss at step {aux['step']}"
        try:
            out = self.loss(theta, batch) if bufs is None else self.loss(theta, batch, bufs)
        except _checks._WRAPPED as e:
            _checks.reraise_user_error(e, what, batch, next(iter(theta.values())))
        value, new_bufs = (out, {}) if bufs is None else _loss_pair(out, what)
        if not isinstance(value, torch.Tensor) or value.ndim != 0:
            raise ValueError(f"{what} must be a scalar (0-dim) tensor, got {_checks.describe(value)}")
        return value, new_bufs

    def grad(self, theta: Params, batch: Batch, aux: dict) -> tuple[Params, tuple]:
        """``∇L_t(θ)`` on ``batch``; returns ``(g, (loss value, new buffers or {}))``."""
        value, bufs, g = _autodiff.value_and_grad(
            lambda th: self.loss_and_buffers(th, batch, aux), theta,
            f"the training loss at step {aux['step']}")
        return g, (value, bufs)

    def grad_and_hvp(self, theta: Params, v: Params, batch: Batch, aux: dict, mode: str = "rev"
                     ) -> tuple[Params, Params, tuple]:
        """``(∇L_t(θ), ∇²L_t(θ) v, (loss value, new buffers))`` in one pass (double backward).

        ``mode`` is accepted only as ``"rev"`` (kept for old callers; to be removed).
        """
        if mode != "rev":
            raise ValueError(f"the Hessian-vector product is reverse-over-reverse ('rev'), got {mode!r}")
        value, bufs, g, hv = _autodiff.grad_and_hvp(
            lambda th: self.loss_and_buffers(th, batch, aux), theta, v,
            f"the training loss at step {aux['step']}")
        return g, hv, (value, bufs)

    def phi(self, w: dict, lr: torch.Tensor, batch: Batch, aux: dict) -> tuple[dict, tuple]:
        """``Φ_t(w, η)`` (the constraint of Eq. 1) with ``t = aux["step"]``.

        Returns ``(w_{t+1}, (L_t(θ(w_t)), new buffers or {}, ∇L_t(θ(w_t))))``. The second part
        is not differentiated: pass ``has_aux=True`` to ``torch.func.jvp``/``vjp``, and build
        ``aux_{t+1}`` with :meth:`next_aux`.
        """
        g, (value, new_bufs) = self.grad(w["params"], batch, aux)
        w_next = self.update(w, g, lr, aux["step"])
        return w_next, (value, new_bufs, g)

    def phi_jvp(self, w: dict, lr: torch.Tensor, batch: Batch, aux: dict, dw: dict | None = None,
                need_B: bool = True) -> tuple[dict, dict, dict, tuple]:
        """``(Φ_t(w, η), A_t ẇ + B_t, B_t, (L_t, new buffers))``: ``Φ_t`` and its derivative
        along ``(ẇ, 1)`` (``ẇ = None`` means 0: no Hessian is needed), outside transforms.

        ``A_t ẇ = ∂U/∂w ẇ + ∂U/∂g ∇²L_t θ(ẇ)``: one gradient with a Hessian-vector product,
        then the tangent of the elementwise update (:meth:`update_tangent`). The tests hold
        it equal to ``torch.func.jvp(Φ_t, (w, η), (ẇ, 1))`` (:func:`phi_jvp_reference`).
        ``need_B=False``: ``B_t`` may come back as ``None`` (:meth:`update_tangent`).
        """
        if dw is None:
            g, (value, bufs) = self.grad(w["params"], batch, aux)
            hv = None
        else:
            g, hv, (value, bufs) = self.grad_and_hvp(w["params"], dw["params"], batch, aux)
        w_next, tangent, B = self.update_tangent(w, g, lr, aux["step"], dw, hv, need_B=need_B)
        return w_next, tangent, B, (value, bufs)

    def update_tangent(self, w: dict, g: Params, lr: torch.Tensor, step: int,
                       dw: dict | None = None, dg: Params | None = None, *,
                       with_lr: bool = True, need_B: bool = True) -> tuple[dict, dict, dict]:
        """``(U, ∂U/∂w·ẇ + ∂U/∂g·ġ + ∂U/∂η, B = ∂U/∂η)`` at ``(w, g, η)`` (``None`` means a zero
        tangent), outside ``torch.func`` transforms: the hand-derived :attr:`update_jvp` when
        there is one, else forward-mode AD of ``update`` (``hypergrad._autodiff.update_jvp``).

        ``with_lr=False`` leaves ``∂U/∂η`` out of the tangent (``A_t ẇ`` alone: the derivative
        along another group's rate, :mod:`hypergrad.optim`). The tangents ``ẇ``, ``ġ`` may
        carry a leading batch dimension (several directions at once): the update is
        elementwise, so they broadcast against ``w`` and ``g``.

        ``need_B=False`` lets a dynamics whose ``update_jvp`` takes ``need_B`` (SGD's) skip
        ``B`` (returned as ``None``) where the caller has no use for it: a pass over the
        weights saved."""
        if self.update_jvp is not None:
            kw = {} if with_lr else {"with_lr": False}
            if not need_B and _takes(self.update_jvp, "need_B"):
                kw["need_B"] = False
            return self.update_jvp(w, g, lr, step, dw, dg, **kw)
        return _autodiff.update_jvp(self.update, w, g, lr, step, dw, dg, with_lr=with_lr)

    def lr_derivative(self, w: dict, g: Params, lr: torch.Tensor, step: int) -> dict:
        """``B = ∂Φ/∂η`` at ``(w, η)`` given the gradient ``g``."""
        return self.update_tangent(w, g, lr, step)[2]

    @staticmethod
    def next_aux(aux: dict, new_bufs: dict) -> dict:
        """``aux_{t+1}``: the step count advanced, the buffers replaced."""
        return {"step": aux["step"] + 1, "buffers": new_bufs if aux["buffers"] is not None else None}

    def step(self, state: State, lr: float | torch.Tensor, batch: Batch) -> State:
        """One optimizer step: ``w_{t+1} = Φ_t(w_t, η_t)`` (the learning rate is checked)."""
        w, (_, bufs, _) = self.phi(state.w, as_lr(lr, _leaf(state)), batch, state.aux)
        return State(w, self.next_aux(state.aux, bufs))

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v}" for k, v in self.hyperparams.items())
        return f"{self.name}({hp})"


def _loss_pair(out, what: str):
    """``(value, new_buffers)`` from a buffered loss (it must return a pair)."""
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
        raise ValueError(f"{what}: a loss called with buffers must return (scalar, new_buffers), "
                         f"got {_checks.describe(out)}")
    return out


def _leaf(state: State) -> torch.Tensor:
    return next(iter(state.w["params"].values()))


def phi_jvp_reference(dyn: Dynamics, w: dict, lr: torch.Tensor, batch: Batch, aux: dict,
                       dw: dict | None = None) -> tuple[dict, dict, dict, tuple]:
    """:meth:`Dynamics.phi_jvp` as ONE ``torch.func.jvp(Φ_t, (w, η), (ẇ, 1))`` (Algorithm 1's
    step 4 as written): the reference the tests compare the fast path to."""
    dw = dw if dw is not None else tree_zeros_like(w)
    w_next, tangent, (value, bufs, g) = jvp(
        lambda w_, lr_: dyn.phi(w_, lr_, batch, aux), (w, lr), (dw, torch.ones_like(lr)),
        has_aux=True)
    _, B = jvp(lambda lr_: dyn.update(w, g, lr_, aux["step"]), (lr,), (torch.ones_like(lr),))
    return w_next, tangent, B, (value, bufs)


def call_objective(objective: Callable, state: State, params: Params) -> torch.Tensor:
    """``E(θ)`` checked to be a scalar; with buffers the objective is called as
    ``objective(params, buffers)`` with the state's buffers (BatchNorm's running statistics)."""
    bufs = state.aux["buffers"]
    try:
        out = objective(params) if bufs is None else objective(params, bufs)
    except _checks._WRAPPED as e:
        _checks.reraise_user_error(e, f"the objective at step {state.aux['step']}", None,
                                   next(iter(params.values())))
    if not isinstance(out, torch.Tensor) or out.ndim != 0:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the objective must return a scalar (0-dim) tensor, got {shape}")
    return out


def objective_value_and_grad(objective: Callable, state: State) -> tuple[torch.Tensor, Params]:
    """``(E(θ(w)), ∇E(θ(w)))`` in one pass, checking that ``E`` is a scalar."""
    value, _, g = _autodiff.value_and_grad(
        lambda th: (call_objective(objective, state, th), None), state.w["params"],
        "the objective")
    return value, g


def check_finite(step: int, what: str, *values: float | torch.Tensor) -> None:
    """Raise :class:`DivergenceError` naming ``step`` when a value is not finite."""
    for v in values:
        if not math.isfinite(float(v)):
            raise DivergenceError(step, what)


def _check_nonneg(**kw):
    for k, v in kw.items():
        if not (v >= 0):  # also catches NaN
            raise ValueError(f"{k} must be a non-negative number, got {v}")


def sgd(loss: Callable, momentum: float = 0.0, weight_decay: float = 0.0,
        nesterov: bool = False) -> Dynamics:
    """SGD with ``torch.optim.SGD`` semantics (``dampening = 0``).

    With ``d = ∇L_t(θ) + λθ``: plain SGD is ``θ' = θ − η d`` (so ``A_t = I − η_t H_t`` and
    ``B_t = −∇L_t(w_t)``, the paper's Section 2); with momentum ``m`` the state is ``(θ, v)``,
    ``v' = m v + d``, ``θ' = θ − η v'`` (``B_t = (−v_{t+1}, 0)``); Nesterov uses
    ``θ' = θ − η (d + m v')``.
    """
    _check_nonneg(momentum=momentum, weight_decay=weight_decay)
    if nesterov and momentum == 0:
        raise ValueError("nesterov momentum requires momentum > 0")

    def update(w, g, lr, k):
        theta = w["params"]
        d = tree_map(lambda gi, p: gi + weight_decay * p, g, theta) if weight_decay else g
        if not momentum:
            return {"params": tree_map(lambda p, di: p - lr * di, theta, d)}
        v = tree_map(lambda vi, di: momentum * vi + di, w["momentum"], d)
        step_dir = tree_map(lambda di, vi: di + momentum * vi, d, v) if nesterov else v
        return {"params": tree_map(lambda p, s: p - lr * s, theta, step_dir), "momentum": v}

    def update_jvp(w, g, lr, k, dw, dg, with_lr=True, need_B=True):
        names, theta, zero = list(g), w["params"], dw is None and dg is None
        need_B = need_B or zero             # with no tangent given, B is the tangent
        new, tan, B = {"params": {}}, {"params": {}}, {"params": {}}
        if momentum:
            for slot in (new, tan, B):
                slot["momentum"] = {}
        for n in names:
            p, d = theta[n], g[n] + weight_decay * theta[n] if weight_decay else g[n]
            dd = None if zero else _plus(_lin(dg, n, 1.0, None), _lin(dw, n, weight_decay))
            if momentum:
                v = momentum * w["momentum"][n] + d
                # a new tensor even when ẇ's slot is 0 (dd may be the caller's ġ: no alias)
                dv = None if zero else _lin(dw, n, momentum, "momentum") + dd
                s_, ds = (d + momentum * v, None if zero else dd + momentum * dv) if nesterov else (v, dv)
                new["momentum"][n] = v
                if need_B:
                    B["momentum"][n] = torch.zeros_like(v)
                tan["momentum"][n] = B["momentum"][n] if zero else dv
            else:
                s_, ds = d, dd
            new["params"][n] = _minus_times(p, lr, s_)
            if need_B:
                B["params"][n] = -s_
            if not with_lr:                 # A_t ẇ alone
                tan["params"][n] = (torch.zeros_like(p) if zero
                                    else _minus_times(_lin(dw, n, 1.0), lr, ds))
            elif zero:
                tan["params"][n] = B["params"][n]
            else:                           # ẇ − η ḋ − s, in one new tensor
                tan["params"][n] = _minus_times(_lin(dw, n, 1.0), lr, ds).sub_(s_)
        return new, tan, (B if need_B else None)

    name = "sgd" if not momentum else "sgd_momentum"
    return Dynamics(name, loss, ("momentum",) if momentum else (), update,
                    dict(momentum=momentum, weight_decay=weight_decay, nesterov=nesterov),
                    update_jvp)


@functools.lru_cache(maxsize=64)
def _takes(fn: Callable, name: str) -> bool:
    """Whether ``fn`` takes a keyword argument ``name``."""
    return name in inspect.signature(fn).parameters


def _plus(a, b):
    """``a + b`` where either may be the float 0.0 of :func:`_lin`: then the other itself,
    not a copy (an alias of an input: never store it in a result)."""
    if isinstance(b, float) and b == 0.0:
        return a
    if isinstance(a, float) and a == 0.0:
        return b
    return a + b


def _minus_times(x, a, y):
    """``x − a·y`` in one pass and one new tensor (``addcmul``, fused: one rounding where
    ``x - a * y`` has two, so the two differ in the last bit of some entries) when ``a`` is a
    tensor that broadcasts and ``x`` a tensor; the plain expression otherwise."""
    if isinstance(a, torch.Tensor) and isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) \
            and torch.broadcast_shapes(x.shape, a.shape, y.shape) == x.shape:
        return torch.addcmul(x, a, y, value=-1)
    return x - a * y


def _lin(tree: dict | None, name: str, c: float, slot: str | None = "params"):
    """``c · tree[slot][name]`` (``tree[name]`` when ``slot`` is None; 0 when ``tree`` is None
    or ``c == 0``): one term of a hand-written tangent."""
    if tree is None or c == 0:
        return 0.0
    x = tree[name] if slot is None else tree[slot][name]
    return x if c == 1 else c * x


def adam(loss: Callable, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
         weight_decay: float = 0.0) -> Dynamics:
    """Adam with ``torch.optim.Adam`` semantics; state ``(θ, m, v)`` plus the step count.

    ``d = ∇L_t(θ) + λθ``, ``m' = β₁m + (1−β₁)d``, ``v' = β₂v + (1−β₂)d²``,
    ``θ' = θ − η/(1−β₁^{k}) · m' / (√v'/√(1−β₂^{k}) + ε)`` with ``k = t + 1``.
    The square root has derivative 0 where ``v' = 0`` (weights whose gradient has always been
    exactly zero, e.g. MNIST's blank border pixels), instead of ``0 · ∞ = NaN``.
    """
    b1, b2 = betas
    _check_nonneg(eps=eps, weight_decay=weight_decay)
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ValueError(f"betas must lie in [0, 1), got {betas}")

    def update(w, g, lr, k):
        theta = w["params"]
        d = tree_map(lambda gi, p: gi + weight_decay * p, g, theta) if weight_decay else g
        m = tree_map(lambda mi, di: b1 * mi + (1 - b1) * di, w["exp_avg"], d)
        v = tree_map(lambda vi, di: b2 * vi + (1 - b2) * di * di, w["exp_avg_sq"], d)
        bc1, bc2_sqrt = 1 - b1 ** (k + 1), (1 - b2 ** (k + 1)) ** 0.5
        new_theta = tree_map(lambda p, mi, vi: p - (lr / bc1) * mi / (_safe_sqrt(vi) / bc2_sqrt + eps),
                             theta, m, v)
        return {"params": new_theta, "exp_avg": m, "exp_avg_sq": v}

    def update_jvp(w, g, lr, k, dw, dg, with_lr=True):
        zero = dw is None and dg is None
        bc1, bc2_sqrt = 1 - b1 ** (k + 1), (1 - b2 ** (k + 1)) ** 0.5
        slots = ("params", "exp_avg", "exp_avg_sq")
        new, tan, B = ({s_: {} for s_ in slots} for _ in range(3))
        for n in g:
            p = w["params"][n]
            d = g[n] + weight_decay * p if weight_decay else g[n]
            m = b1 * w["exp_avg"][n] + (1 - b1) * d
            v = b2 * w["exp_avg_sq"][n] + (1 - b2) * d * d
            root = _safe_sqrt(v)
            r = root / bc2_sqrt + eps
            new["params"][n], new["exp_avg"][n], new["exp_avg_sq"][n] = p - (lr / bc1) * m / r, m, v
            B["params"][n] = -m / (bc1 * r)
            B["exp_avg"][n] = B["exp_avg_sq"][n] = torch.zeros_like(m)
            if zero:
                tan["params"][n], tan["exp_avg"][n], tan["exp_avg_sq"][n] = (
                    B["params"][n] if with_lr else torch.zeros_like(m), B["exp_avg"][n],
                    B["exp_avg_sq"][n])
                continue
            dd = _lin(dg, n, 1.0, None) + _lin(dw, n, weight_decay)
            dm = _lin(dw, n, b1, "exp_avg") + (1 - b1) * dd
            dv = _lin(dw, n, b2, "exp_avg_sq") + 2 * (1 - b2) * d * dd
            dr = torch.where(v > 0, dv / (2 * torch.where(v > 0, root, torch.ones_like(root))),
                             torch.zeros_like(v)) / bc2_sqrt
            step_ = (lr / bc1) * (dm * r - m * dr) / (r * r)
            tan["params"][n] = (_lin(dw, n, 1.0) + B["params"][n] - step_ if with_lr
                                else _lin(dw, n, 1.0) - step_)
            tan["exp_avg"][n], tan["exp_avg_sq"][n] = dm, dv
        return new, tan, B

    return Dynamics("adam", loss, ("exp_avg", "exp_avg_sq"), update,
                    dict(betas=betas, eps=eps, weight_decay=weight_decay), update_jvp)


def _safe_sqrt(v: torch.Tensor) -> torch.Tensor:
    """``√v`` whose derivative is 0 (not inf) at ``v = 0``."""
    pos = v > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, v, torch.ones_like(v))), torch.zeros_like(v))


def grouped(dyn: Dynamics, groups: dict[str, int]) -> Dynamics:
    """``dyn`` with one learning rate per group of weights: ``η`` is a vector ``(η^0, …,
    η^{G-1})`` and the weights ``n`` (with their optimizer slots) move with ``η^{groups[n]}``.

    ``Φ_t(w, η) = (U(w_g, ∇L_t(θ)_g, η^g, t))_g``: the same elementwise update applied group
    by group, so that ``∂Φ_t/∂η^g = B^g_t`` is ``B_t`` on group ``g``'s weights and zero
    elsewhere. What :func:`~hypergrad.hypergradient.hypergradient` differentiates with a
    ``T × G`` schedule; :mod:`hypergrad.optim` runs the same update group by group.
    """
    if not isinstance(groups, dict) or not groups:
        raise TypeError(f"groups must be a dict {{weight name: group index}}, got "
                        f"{_checks.describe(groups)}")
    ids = sorted(set(groups.values()))
    if any(not isinstance(i, int) or isinstance(i, bool) for i in ids) or \
            ids != list(range(len(ids))):
        raise ValueError(f"the group indices must be 0, 1, …, G-1, each used; got {ids}")
    members = [[n for n in groups if groups[n] == i] for i in ids]

    def update(w, g, lr, k):
        if set(g) != set(groups):
            raise ValueError(f"groups names the weights {sorted(groups)}, the state has "
                             f"{sorted(g)}")
        out = {s: {} for s in w}
        for i, names in enumerate(members):
            sub = dyn.update({s: {n: w[s][n] for n in names} for s in w},
                             {n: g[n] for n in names}, lr[i], k)
            for s, d in sub.items():
                out[s].update(d)
        return {s: {n: out[s][n] for n in w[s]} for s in w}      # the state's own order

    return Dynamics(f"{dyn.name}_grouped", dyn.loss, dyn.slots, update,
                    {**dyn.hyperparams, "groups": len(members)})


def weight_decay_schedule(dyn: Dynamics, lrs) -> Dynamics:
    """``dyn`` with the coupled weight decay ``λ_t`` as its schedule: ``Φ_t(w, λ) =
    U(w, ∇L_t(θ) + λθ, η_t, t)`` with the learning rates ``η_t = lrs[t]`` fixed.

    What :func:`~hypergrad.hypergradient.hypergradient` differentiates to get
    ``∂f_T/∂λ_t`` (pass the ``λ`` schedule where the learning rates go). ``dyn`` must have no
    weight decay of its own (it would be added twice); ``∂Φ_t/∂λ = ∂U/∂g · θ``, the
    direction :mod:`hypergrad.optim` follows online.
    """
    if dyn.hyperparams.get("weight_decay"):
        raise ValueError("weight_decay_schedule: give the dynamics without weight decay "
                         f"(it has weight_decay={dyn.hyperparams['weight_decay']}): λ_t is "
                         "the schedule")
    lrs = _checks.check_schedule(lrs)

    def update(w, g, lam, k):
        d = {n: g[n] + lam * w["params"][n] for n in g}
        eta = lrs[k].to(dtype=w["params"][next(iter(g))].dtype)
        return dyn.update(w, d, eta, k)

    return Dynamics(f"{dyn.name}_weight_decay", dyn.loss, dyn.slots, update,
                    {**dyn.hyperparams, "lrs": "fixed"})


#: the dynamics by name, for :func:`make_dynamics`
DYNAMICS = {"sgd": sgd, "adam": adam}


def make_dynamics(name: str, loss: Callable, **options) -> Dynamics:
    """``sgd(loss, **options)`` or ``adam(loss, **options)`` by name; an option the optimizer
    does not take is an error, except ``momentum=0`` for Adam (which has none)."""
    if name not in DYNAMICS:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}")
    if name == "adam" and options.get("momentum", 0.0) == 0.0:
        options.pop("momentum", None)
    try:
        return DYNAMICS[name](loss, **options)
    except TypeError as e:
        raise ValueError(f"optimizer={name!r}: {e}") from None
