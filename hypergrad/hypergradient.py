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
from torch.func import jvp, vmap

from hypergrad import _autodiff, _checks
from hypergrad.dynamics import (
    DivergenceError,
    Dynamics,
    Params,
    State,
    check_finite,
    objective_value_and_grad,
)
from hypergrad.tree import tree_all_finite, tree_map, tree_zeros_like

__all__ = ["hypergradient", "check_schedule", "objective_value_and_grad", "unroll"]


def check_schedule(lrs: torch.Tensor | Sequence[float], like: torch.Tensor | None = None,
                   length: int | None = None) -> torch.Tensor:
    """Validate a schedule ``η ∈ R^T_{≥0}``: real, 1-D, finite, non-negative, of the right
    length (``hypergrad._checks.check_schedule``)."""
    return _checks.check_schedule(lrs, like, length)


def _as_state(dyn: Dynamics, params_or_state) -> State:
    if isinstance(params_or_state, State):
        _checks.check_params(params_or_state.w.get("params"), "the state's params")
        return params_or_state
    return dyn.init(params_or_state)


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
            w, (value, bufs, _) = dyn.phi(state.w, lrs[s], batch, state.aux)
            state = State(w, dyn.next_aux(state.aux, bufs))
            if check:
                check_finite(s, "the training loss", value)
            if keep_every and (s + 1) % keep_every == 0 and s + 1 < len(lrs):
                checkpoints[s + 1] = state
    if check and not tree_all_finite(state.w):
        raise DivergenceError(len(lrs) - 1, "the state")
    return state, checkpoints


def hypergradient(dyn: Dynamics, params: Params | State, lrs: torch.Tensor | Sequence[float],
                  batches: Sequence, objective: Callable, *,
                  mode: str = "reverse", checkpoint_every: int | None = None
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
        checkpoint_every: reverse mode's segment length ``k`` (default ``⌈√T⌉``; ``1``
            stores every state, ``T`` stores only ``w_0`` and keeps all ``T`` pullbacks).

    Returns:
        ``value = E(w_T)`` and ``grad`` with ``grad[t] = ∂f_T/∂η_t``.

    Weights that ``E`` (or ``L_t``) does not use contribute zero, as
    ``torch.autograd.grad(..., allow_unused=True)`` with zeros materialised would give.

    Raises:
        ValueError, TypeError: a bad argument, named (params not a dict of real tensors of one
            dtype and device, a schedule that is complex, negative, non-finite or of the wrong
            length, a non-scalar objective or loss); an objective or training loss that does
            not depend on the weights at all (a closure over the wrong weights, whose
            hypergradient would silently be 0); an error inside the loss or the objective,
            re-raised naming the step (and the batch's dtype or device when they differ).
        DivergenceError: a non-finite training loss (naming its step ``t``), or a non-finite
            ``E(w_T)``, ``∇E(w_T)`` or hypergradient (step ``T``), the rule of
            :meth:`~hypergrad.online.Marthe.step`.
    """
    state0 = _as_state(dyn, params)
    theta0 = state0.w["params"]
    if isinstance(batches, (str, bytes, torch.Tensor)) or not hasattr(batches, "__iter__"):
        raise TypeError(f"batches must be a sequence of T minibatches, got "
                        f"{_checks.describe(batches)}")
    batches = list(batches)
    lrs = check_schedule(lrs, like=next(iter(theta0.values())), length=len(batches))
    if mode == "reverse":
        return _reverse(dyn, state0, lrs, batches, objective, checkpoint_every)
    if mode == "forward":
        return _forward(dyn, state0, lrs, batches, objective)
    raise ValueError(f"mode must be 'reverse' or 'forward', got {mode!r}")


def _reverse(dyn, state0, lrs, batches, objective, k, vjp=_autodiff.vjp):
    """Reverse mode (the adjoint recursion). ``vjp`` replays a step: plain autograd by default;
    the tests pass ``torch.func.vjp`` as the reference (the same products)."""
    T = len(batches)
    k = max(1, min(T, k or math.ceil(math.sqrt(T))))
    state_T, checkpoints = unroll(dyn, state0, lrs, batches, keep_every=k)
    value, g_E = _final_objective(objective, state_T, T)
    # p_T = ∇E(w_T): nonzero only in the weights part θ(w).
    p = {**tree_zeros_like(state_T.w), "params": g_E}
    grad = torch.zeros_like(lrs)
    for start in reversed(range(0, T, k)):
        steps = range(start, min(start + k, T))
        pullbacks = _replay(dyn, checkpoints[start], lrs, batches, steps, vjp)
        for s in reversed(steps):
            p, g_lr = pullbacks.pop()(p)            # p_s = A_sᵀ p_{s+1};  B_sᵀ p_{s+1}
            grad[s] = g_lr
    _check_hypergradient(T, grad)
    return value, grad


def _replay(dyn, state, lrs, batches, steps, vjp):
    """Replay one segment from its checkpoint, keeping one pullback of ``Φ_s`` per step."""
    pullbacks = []
    for s in steps:
        aux = state.aux
        w_next, pullback, (_, bufs, _) = vjp(
            lambda w, lr, b=batches[s], a=aux: dyn.phi(w, lr, b, a), state.w, lrs[s], has_aux=True)
        pullbacks.append(pullback)
        state = State(w_next, dyn.next_aux(aux, bufs))
    return pullbacks


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
        check_finite(t, "the training loss", value)
        state = State(w_next, dyn.next_aux(aux, bufs))
    value, g_E = _final_objective(objective, state, T)
    grad = sum(torch.einsum("t...,...->t", Zp, gp)
               for Zp, gp in zip(Z["params"].values(), g_E.values(), strict=True))
    _check_hypergradient(T, grad)
    return value, grad


def _final_objective(objective, state_T: State, T: int):
    """``(E(w_T), ∇E(w_T))``, with the rule of :meth:`~hypergrad.online.Marthe.step`: a
    non-finite objective or gradient raises :class:`DivergenceError` naming the step ``T``."""
    value, g_E = objective_value_and_grad(objective, state_T)
    check_finite(T, "the objective E(θ(w_T))", value)
    if not tree_all_finite(g_E):
        raise DivergenceError(T, "the gradient of the objective ∇E(θ(w_T))")
    return value, g_E


def _check_hypergradient(T: int, grad: torch.Tensor) -> None:
    if not bool(torch.isfinite(grad).all()):
        bad = int((~torch.isfinite(grad)).nonzero()[0])
        raise DivergenceError(T, f"the hypergradient (entry {bad})")
