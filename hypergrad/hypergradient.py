"""The exact hypergradient of a schedule, ``∇f_T(η)`` (the paper's Eq. 2–4).

``f_T(η) = E(θ(w_T))`` with ``w_{t+1} = Φ_t(w_t, η_t)``. Its gradient (Eq. 2) is
``(dw_T/dη)ᵀ ∇E(w_T)``, and entry ``t`` (Eq. 4) is

    ∂f_T/∂η_t = ∇E(w_T)ᵀ A_{T-1} ⋯ A_{t+1} B_t,

which depends only on the trajectory *after* step ``t``.

* ``mode="reverse"`` (default): the adjoint recursion ``p_T = ∇E(w_T)``,
  ``p_s = A_sᵀ p_{s+1}``, ``∂f_T/∂η_s = p_{s+1}ᵀ B_s`` — one vector–Jacobian product of
  ``Φ_s`` per step, all ``T`` entries at once. No autograd graph is kept across steps: the
  forward pass keeps every ``k``-th state (a checkpoint), and the backward pass replays one
  segment of ``k`` steps at a time from its checkpoint, keeping only that segment's ``k``
  pullbacks. Memory: ``T/k`` states plus ``k`` one-step graphs (``k = ⌈√T⌉`` by default).
* ``mode="forward"``: the tangent system of Eq. 3, ``Z_{t+1} = A_t Z_t + B_t e_tᵀ``, carried
  as ``T`` state-sized columns at once (``vmap`` over the columns of one ``jvp``). ``O(T)``
  memory in states and ``O(T²)`` Jacobian–vector products: the reference, for small ``T``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch.func import grad_and_value, jvp, vjp, vmap

from hypergrad.dynamics import (
    DivergenceError,
    Dynamics,
    Params,
    State,
    tree_all_finite,
    tree_leaves,
    tree_map,
    tree_zeros_like,
)

__all__ = ["hypergradient", "check_schedule", "objective_value_and_grad", "unroll"]


def check_schedule(lrs: torch.Tensor | Sequence[float], like: torch.Tensor | None = None, length: int | None = None) -> torch.Tensor:
    """Validate a schedule ``η ∈ R^T_{≥0}``: 1-D, finite, non-negative, of the right length."""
    lrs = torch.as_tensor(lrs)
    if like is not None:
        lrs = lrs.to(dtype=like.dtype, device=like.device)
    if lrs.ndim != 1:
        raise ValueError(f"the schedule must be a 1-D tensor of T learning rates, got shape "
                         f"{tuple(lrs.shape)}")
    if not torch.isfinite(lrs).all():
        bad = int((~torch.isfinite(lrs)).nonzero()[0])
        raise ValueError(f"the schedule has a non-finite learning rate at step {bad}: "
                         f"{lrs[bad].item()}")
    if (lrs < 0).any():
        bad = int((lrs < 0).nonzero()[0])
        raise ValueError(f"learning rates must be >= 0; step {bad} has {lrs[bad].item()}")
    if length is not None and lrs.numel() != length:
        raise ValueError(f"the schedule has {lrs.numel()} learning rates but there are "
                         f"{length} minibatches: one learning rate per step is needed")
    return lrs


def _as_state(dyn: Dynamics, params_or_state) -> State:
    return params_or_state if isinstance(params_or_state, State) else dyn.init(params_or_state)


def _call_objective(objective: Callable, state: State):
    """``E(θ(w))``; with buffers the objective is called as ``objective(params, buffers)``."""
    bufs = state.aux["buffers"]
    return (lambda th: objective(th)) if bufs is None else (lambda th: objective(th, bufs))


def objective_value_and_grad(objective: Callable, state: State, eager: bool = False
                             ) -> tuple[torch.Tensor, Params]:
    """``(E(θ(w)), ∇E(θ(w)))`` in one pass, checking that ``E`` is a scalar.

    ``eager=True`` uses plain autograd (faster; not inside ``torch.func`` transforms).
    """
    f = _call_objective(objective, state)

    def checked(theta):
        out = f(theta)
        if not isinstance(out, torch.Tensor) or out.ndim != 0:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"the objective must return a scalar (0-dim) tensor, got {shape}")
        return out

    theta = state.w["params"]
    if not eager:
        g, value = grad_and_value(checked)(theta)
        return value.detach(), g
    names = list(theta)
    leaves = [theta[k].detach().requires_grad_() for k in names]
    with torch.enable_grad():
        value = checked(dict(zip(names, leaves, strict=True)))
        gs = torch.autograd.grad(value, leaves)
    return value.detach(), dict(zip(names, gs, strict=True))


def unroll(dyn: Dynamics, params_or_state: Params | State, lrs: torch.Tensor, batches: Sequence, *, keep_every: int = 0,
           check: bool = True) -> tuple[State, dict[int, State]]:
    """Run ``w_{t+1} = Φ_t(w_t, η_t)`` for ``t < T`` without any autograd graph.

    Returns ``w_T`` and the checkpoints ``{s: w_s}`` for ``s`` multiple of ``keep_every``
    (none when 0). Raises :class:`~hypergrad.dynamics.DivergenceError` at the first non-finite training loss.
    """
    state = _as_state(dyn, params_or_state)
    checkpoints = {0: state} if keep_every else {}
    with torch.no_grad():
        for s, batch in enumerate(batches):
            g, _, (value, bufs) = dyn.grad_eager(state.w["params"], batch, state.aux)
            state = State(dyn.update(state.w, g, lrs[s], state.aux["step"]),
                          dyn.next_aux(state.aux, bufs))
            if check and not torch.isfinite(value):
                raise DivergenceError(s, "the training loss")
            if keep_every and (s + 1) % keep_every == 0 and s + 1 < len(lrs):
                checkpoints[s + 1] = state
    if check and not tree_all_finite(state.w):
        raise DivergenceError(len(lrs) - 1, "the state")
    return state, checkpoints


def hypergradient(dyn: Dynamics, params: Params | State, lrs: torch.Tensor | Sequence[float],
                  batches: Sequence, objective: Callable, *,
                  mode: str = "reverse", checkpoint_every: int | None = None,
                  engine: str = "autograd"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(f_T(η), ∇f_T(η))`` for ``f_T(η) = E(θ(w_T(η)))`` (Eq. 1–4).

    Args:
        dyn: the dynamics ``Φ`` (:func:`~hypergrad.dynamics.sgd`, :func:`~hypergrad.dynamics.adam`).
        params: initial weights (dict of tensors) or an initial :class:`~hypergrad.dynamics.State` ``w_0``.
        lrs: the schedule ``η``, a 1-D tensor of ``T`` non-negative learning rates.
        batches: ``T`` minibatches; step ``t`` uses ``batches[t]``.
        objective: ``E``: ``objective(params) -> scalar`` (``objective(params, buffers)``
            when the state carries buffers).
        mode: ``"reverse"`` (adjoint, checkpointed) or ``"forward"`` (tangent system, Eq. 3).
        engine: reverse mode's replay: ``"autograd"`` (plain autograd graphs, faster) or
            ``"func"`` (``torch.func.vjp`` of ``Φ_t``); both give the same products.
        checkpoint_every: reverse mode's segment length ``k`` (default ``⌈√T⌉``; ``1``
            stores every state, ``T`` stores only ``w_0`` and keeps all ``T`` pullbacks).

    Returns:
        ``value = E(w_T)`` and ``grad`` with ``grad[t] = ∂f_T/∂η_t``.
    """
    state0 = _as_state(dyn, params)
    theta0 = state0.w["params"]
    batches = list(batches)
    lrs = check_schedule(lrs, like=next(iter(theta0.values())), length=len(batches))
    if mode == "reverse":
        if engine not in ("autograd", "func"):
            raise ValueError(f"engine must be 'autograd' or 'func', got {engine!r}")
        return _reverse(dyn, state0, lrs, batches, objective, checkpoint_every, engine)
    if mode == "forward":
        return _forward(dyn, state0, lrs, batches, objective)
    raise ValueError(f"mode must be 'reverse' or 'forward', got {mode!r}")


def _reverse(dyn, state0, lrs, batches, objective, k, engine):
    T = len(batches)
    k = max(1, min(T, k or math.ceil(math.sqrt(T))))
    state_T, checkpoints = unroll(dyn, state0, lrs, batches, keep_every=k)
    value, g_E = objective_value_and_grad(objective, state_T, eager=True)
    # p_T = ∇E(w_T): nonzero only in the weights part θ(w).
    p = {**tree_zeros_like(state_T.w), "params": g_E}
    grad = torch.zeros_like(lrs)
    replay = _replay_autograd if engine == "autograd" else _replay_func
    for start in reversed(range(0, T, k)):
        steps = range(start, min(start + k, T))
        pullbacks = replay(dyn, checkpoints[start], lrs, batches, steps)
        for s in reversed(steps):
            p, g_lr = pullbacks.pop()(p)            # p_s = A_sᵀ p_{s+1};  B_sᵀ p_{s+1}
            grad[s] = g_lr
    return value, grad


def _replay_func(dyn, state, lrs, batches, steps):
    """Replay one segment from its checkpoint, keeping one ``torch.func.vjp`` pullback per step."""
    pullbacks = []
    for s in steps:
        aux = state.aux
        w_next, pullback, (_, bufs, _) = vjp(
            lambda w, lr, b=batches[s], a=aux: dyn.phi(w, lr, b, a), state.w, lrs[s], has_aux=True)
        pullbacks.append(pullback)
        state = State(w_next, dyn.next_aux(aux, bufs))
    return pullbacks


def _replay_autograd(dyn, state, lrs, batches, steps):
    """As :func:`_replay_func` with plain autograd graphs (``create_graph`` on ``∇L_t``):
    less overhead per operation, the same vector–Jacobian products."""
    pullbacks = []
    for s in steps:
        w = tree_map(lambda x: x.detach().requires_grad_(), state.w)
        lr = lrs[s].detach().requires_grad_()
        with torch.enable_grad():
            theta, aux = w["params"], state.aux
            names = list(theta)
            leaves = [theta[n] for n in names]
            value, bufs = dyn.loss_and_buffers(theta, batches[s], aux)
            g = dict(zip(names, torch.autograd.grad(value, leaves, create_graph=True), strict=True))
            w_next = dyn.update(w, g, lr, aux["step"])
        pullbacks.append(_autograd_pullback(w, lr, w_next))
        state = State(tree_map(torch.Tensor.detach, w_next), dyn.next_aux(aux, bufs))
    return pullbacks


def _autograd_pullback(w, lr, w_next):
    def pullback(p):
        inputs = tree_leaves(w) + [lr]
        outs = tree_leaves(w_next)
        cotangents = tree_leaves(tree_map(lambda _, q: q, w_next, p))   # aligned with outs
        used = [i for i, o in enumerate(outs) if o.requires_grad]
        grads = torch.autograd.grad([outs[i] for i in used], inputs,
                                    grad_outputs=[cotangents[i] for i in used],
                                    allow_unused=True)
        grads = [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads, strict=True)]
        it = iter(grads[:-1])
        return tree_map(lambda _: next(it), w), grads[-1]

    return pullback


def _forward(dyn, state0, lrs, batches, objective):
    T = len(batches)
    state = state0
    # Z_0 = 0: T columns, one per learning rate (leading dimension).
    Z = tree_map(lambda x: x.new_zeros((T, *x.shape)), state.w)
    eye = torch.eye(T, dtype=lrs.dtype, device=lrs.device)
    for t in range(T):
        aux = state.aux

        def tangent(z, e, lr=lrs[t], b=batches[t], a=aux, w=state.w):
            return jvp(lambda w_, lr_: dyn.phi(w_, lr_, b, a)[0], (w, lr), (z, e))[1]

        with torch.no_grad():
            w_next, (value, bufs, _) = dyn.phi(state.w, lrs[t], batches[t], aux)
            Z = vmap(tangent)(Z, eye[t])            # Z_{t+1} = A_t Z_t + B_t e_tᵀ
        if not torch.isfinite(value):
            raise DivergenceError(t, "the training loss")
        state = State(w_next, dyn.next_aux(aux, bufs))
    value, g_E = objective_value_and_grad(objective, state, eager=True)
    grad = sum(torch.einsum("t...,...->t", Zp, gp)
               for Zp, gp in zip(Z["params"].values(), g_E.values(), strict=True))
    return value, grad
