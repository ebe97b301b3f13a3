r"""The exact hypergradient of a schedule, ``∇f_T(η)`` (the paper's Eq. 2–4).

``f_T(η) = E(θ(w_T))`` with ``w_{t+1} = Φ_t(w_t, η_t)``. Its gradient (Eq. 2) is
``(dw_T/dη)ᵀ ∇E(w_T)``, and entry ``t`` (Eq. 4) is

.. math::

    ∂f_T/∂η_t = ∇E(w_T)^\top A_{T-1} ⋯ A_{t+1} B_t,

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

:func:`hypergradients` computes the hypergradients of ``N`` members (their own initial weights,
schedules and minibatches; the same model, dynamics and objective) as ONE ``torch.func.vmap``-ed
reverse-mode computation, each member equal to its own :func:`hypergradient`; a member that
diverges is reported with the error its own call raises, and does not stop the others.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch.func import grad_and_value, jvp, vjp, vmap

from hypergrad import _autodiff, _checks
from hypergrad.dynamics import (
    DivergenceError,
    Dynamics,
    Params,
    State,
    call_objective,
    check_finite,
    grouped,
    objective_value_and_grad,
)
from hypergrad.tree import tree_all_finite, tree_leaves, tree_map, tree_zeros_like

__all__ = ["hypergradient", "hypergradients", "check_schedule", "objective_value_and_grad",
           "unroll"]


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
                  mode: str = "reverse", checkpoint_every: int | None = None,
                  groups: dict[str, int] | None = None
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
        groups: one learning rate per group of weights: ``{weight name: g}`` with
            ``g = 0 … G-1``; the schedule is then ``T × G`` (:func:`~hypergrad.dynamics.grouped`).

    Returns:
        ``value = E(w_T)`` and ``grad`` with ``grad[t] = ∂f_T/∂η_t`` (with ``groups``,
        ``grad[t, g] = ∂f_T/∂η_{t,g}``).

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
    if groups is not None:
        dyn = grouped(dyn, groups)
        if set(groups) != set(theta0):
            raise ValueError(f"groups names the weights {sorted(groups)}, the model has "
                             f"{sorted(theta0)}")
    lrs = _checks.check_schedule(lrs, like=next(iter(theta0.values())), length=len(batches),
                                 groups=None if groups is None else dyn.hyperparams["groups"])
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
    n = lrs.numel()             # one column per learning rate (T, or T·G with groups)
    Z = tree_map(lambda x: x.new_zeros((n, *x.shape)), state.w)
    eye = torch.eye(n, dtype=lrs.dtype, device=lrs.device).view(n, *lrs.shape).movedim(0, 1)
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
    grad = grad.view(lrs.shape)
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
        bad = int((~torch.isfinite(grad)).flatten().nonzero()[0])
        raise DivergenceError(T, f"the hypergradient (entry {bad})")


# ------------------------------------------------------------------ N members at once (vmap)
def hypergradients(dyn: Dynamics, params: Params, lrs: torch.Tensor, batches: Sequence,
                   objective: Callable, *, checkpoint_every: int | None = None,
                   chunk_size: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, list[DivergenceError | None]]:
    """The exact hypergradients (Eq. 4, reverse mode) of ``N`` members as one ``vmap``-ed
    computation: member ``i`` is ``hypergradient(dyn, θ0_i, η_i, batches_i, objective)``.

    Args:
        dyn: the dynamics, shared; models without buffers.
        params: the members' initial weights ``w_0``, one dict of ``(N, ...)`` tensors.
        lrs: the members' schedules, ``(N, T)``, non-negative.
        batches: ``T`` minibatches, each a tree (tuple, list, dict) of ``(N, ...)`` tensors
            (member ``i``'s at index ``i``).
        objective: ``E(params) -> scalar``, one member's (shared by all members).
        checkpoint_every: ``k`` as in :func:`hypergradient` (default ``⌈√T⌉``): the forward
            pass keeps every ``k``-th state and the backward pass replays one segment of ``k``
            steps at a time (``vjp`` of the segment); ``k ≥ T`` differentiates the whole
            trajectory in one ``vjp`` (one forward pass instead of two; ``T`` states kept).
        chunk_size: passed to ``vmap`` (members computed per chunk, to bound memory).

    Returns:
        ``(values (N,), grads (N, T), failures)``: ``failures[i]`` is ``None`` or the
        :class:`~hypergrad.dynamics.DivergenceError` that member ``i``'s own
        :func:`hypergradient` raises (same step, same reason); its value and gradient are then
        meaningless. One host synchronisation (to read the failures).

    Reverse mode only: forward mode carries ``T`` tangent columns (``O(T²)`` products), measured
    29× slower than reverse mode on the quick MNIST task (``T = 100``) before any batching.
    """
    theta0 = _checks.check_params(params)
    like = next(iter(theta0.values()))
    n = like.shape[0] if like.ndim else 0
    if n < 1 or any(v.ndim == 0 or v.shape[0] != n for v in theta0.values()):
        raise ValueError("params must be a dict of (N, ...) tensors with the same N >= 1")
    if not isinstance(lrs, torch.Tensor) or lrs.ndim != 2 or lrs.shape[0] != n:
        raise ValueError(f"lrs must be an (N, T) tensor with N = {n}, got {_checks.describe(lrs)}")
    batches = list(batches)
    T = len(batches)
    if lrs.shape[1] != T or T == 0:
        raise ValueError(f"lrs has {lrs.shape[1]} learning rates per member but there are {T} "
                         f"minibatches")
    lrs = lrs.to(dtype=like.dtype, device=like.device)
    if not bool(torch.isfinite(lrs).all() and (lrs >= 0).all()):
        raise ValueError("the schedules must be finite and >= 0")
    k = max(1, min(T, checkpoint_every or math.ceil(math.sqrt(T))))
    w0 = {"params": theta0, **{slot: tree_zeros_like(theta0) for slot in dyn.slots}}

    def vm(fn):
        return vmap(fn, chunk_size=chunk_size)

    def final(w_T):
        state_T = State(w_T, {"step": T, "buffers": None})
        g_E, value = grad_and_value(lambda th: call_objective(objective, state_T, th))(w_T["params"])
        return value, g_E, _finite(w_T), _finite(g_E)

    if k >= T:                      # one vjp of the whole trajectory (one forward pass)
        def member(w, lr, bs):
            (w_T, pullback, losses) = vjp(lambda e: _run_steps(dyn, w, e, bs, 0), lr, has_aux=True)
            value, g_E, fin_w, fin_g = final(w_T)
            (grad,) = pullback({**tree_zeros_like(w_T), "params": g_E})
            return value, grad, losses, fin_w, fin_g

        values, grads, losses, fin_w, fin_g = vm(member)(w0, lrs, batches)
    else:
        with torch.no_grad():       # forward: every k-th state, the training losses
            checkpoints, losses, w = {}, [], w0
            for start in range(0, T, k):
                checkpoints[start] = w
                stop = min(start + k, T)
                w, seg_losses = vm(lambda w_, e, bs, s=start: _run_steps(dyn, w_, e, bs, s))(
                    w, lrs[:, start:stop], batches[start:stop])
                losses.append(seg_losses)
            losses = torch.cat(losses, dim=1)
            values, g_E, fin_w, fin_g = vm(final)(w)
        p = {**tree_zeros_like(w), "params": g_E}
        grads = []

        def back(w_, e, bs, p_, s):
            _, pullback, _ = vjp(lambda w__, e_: _run_steps(dyn, w__, e_, bs, s), w_, e,
                                 has_aux=True)
            return pullback(p_)

        for start in reversed(range(0, T, k)):  # p_s = A_sᵀ p_{s+1}; ∂f_T/∂η_s = B_sᵀ p_{s+1}
            stop = min(start + k, T)
            p, g = vm(lambda w_, e, bs, p_, s=start: back(w_, e, bs, p_, s))(
                checkpoints.pop(start), lrs[:, start:stop], batches[start:stop], p)
            grads.append(g)
        grads = torch.cat(grads[::-1], dim=1)
    return values, grads, _failures(T, losses, fin_w, values, fin_g, grads)


def _run_steps(dyn, w, lrs, batches, start):
    """``w ↦ Φ_{start+j-1} ∘ ⋯ ∘ Φ_start (w)`` over ``len(batches)`` steps (one member, inside
    ``vmap``): the last state and the training losses ``L_s(θ(w_s))`` (not differentiated)."""
    losses = []
    for j, batch in enumerate(batches):
        w, (loss, _, _) = dyn.phi(w, lrs[j], batch, {"step": start + j, "buffers": None})
        losses.append(loss.detach())
    return w, torch.stack(losses)


def _finite(tree) -> torch.Tensor:
    """:func:`~hypergrad.tree.tree_all_finite` (the same sums) as a tensor: no host sync, and
    it works under ``vmap``."""
    return torch.stack([x.sum() for x in tree_leaves(tree)]).isfinite().all()


def _failures(T, losses, fin_w, values, fin_g, grads) -> list[DivergenceError | None]:
    """Per member, the error of :func:`hypergradient`'s checks, in its order: a non-finite
    training loss (its step), state ``w_T`` (step ``T-1``), ``E(w_T)``, ``∇E(w_T)`` and
    hypergradient (step ``T``)."""
    fin_l, fin_h = torch.isfinite(losses), torch.isfinite(grads)
    table = torch.cat([fin_l, fin_w[:, None], torch.isfinite(values)[:, None], fin_g[:, None],
                       fin_h], dim=1).cpu().tolist()                  # one read
    out = []
    for row in table:
        bad = next((j for j, ok in enumerate(row) if not ok), None)
        if bad is None:
            out.append(None)
        elif bad < T:
            out.append(DivergenceError(bad, "the training loss"))
        elif bad == T:
            out.append(DivergenceError(T - 1, "the state"))
        elif bad == T + 1:
            out.append(DivergenceError(T, "the objective E(θ(w_T))"))
        elif bad == T + 2:
            out.append(DivergenceError(T, "the gradient of the objective ∇E(θ(w_T))"))
        else:
            out.append(DivergenceError(T, f"the hypergradient (entry {bad - T - 3})"))
    return out
