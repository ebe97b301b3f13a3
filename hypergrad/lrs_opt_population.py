"""LRS-OPT for a population of runs at once: one ``vmap``-batched hypergradient per outer
iteration for every member (:func:`lrs_opt_population`), each member's schedule, minibatches
and outer-optimiser state its own, equal to :func:`~hypergrad.lrs_opt.lrs_opt` run member by
member."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from hypergrad import _checks
from hypergrad.dynamics import Dynamics, Params, State
from hypergrad.hypergradient import check_schedule, hypergradients
from hypergrad.io import run_metadata
from hypergrad.lrs_opt import (
    LrsOptResult,
    _check_run,
    _outer_init,
    _outer_step,
    _progress,
    _settings,
    _state_to_json,
)
from hypergrad.population import stack_params

__all__ = ["lrs_opt_population"]


def lrs_opt_population(dyn: Dynamics, params: Sequence[Params],
                       lrs: torch.Tensor | Sequence, batches: Sequence,
                       objective: Callable, iterations: int, step_size: float, *,
                       max_lr: float | None = None, optimizer: str = "pgd",
                       optimizer_options: dict | None = None,
                       checkpoint_every: int | None = None, chunk_size: int | None = None,
                       progress: bool = False) -> list[LrsOptResult]:
    """LRS-OPT (Problem (1), Section 5) for ``N`` members at once: at every iteration the
    ``N`` exact hypergradients ``∇f_T(η_i)`` (Eq. 4) are ONE ``vmap``-ed reverse-mode
    computation (:func:`~hypergrad.hypergradient.hypergradients`), then each member takes its
    own outer step ``η_i ← Π(η_i − γ d_i)`` (PGD, Nesterov or Adam, as in :func:`~hypergrad.lrs_opt.lrs_opt`).

    Member ``i`` equals ``lrs_opt(dyn, params[i], lrs[i], batches[i], objective, iterations,
    step_size, ...)`` (to rounding: tested to 1e-10 in float64), including divergence: a member
    whose iteration diverges stops there, with ``diverged`` set (the iteration, the inner
    step and the reason its serial run reports) and its last good schedule; the others go on.

    Args:
        dyn: the dynamics, shared (one model shape, one optimizer); models without buffers.
        params: ``N`` initial weight dicts ``w_0`` (same names, shapes, dtype and device).
        lrs: the initial schedules: one (1-D, ``T`` entries, ``≥ 0``) for every member, or
            ``N`` of them (an ``(N, T)`` tensor or a sequence of ``N`` schedules).
        batches: per member, ``T`` minibatches or ``iteration -> T minibatches`` (fresh ones
            per iteration); minibatch ``t`` must have the same shapes for every member.
        objective: ``E(params) -> scalar``, shared by the members (e.g. the validation loss).
        iterations, step_size, max_lr, optimizer, optimizer_options: as in :func:`~hypergrad.lrs_opt.lrs_opt`.
        checkpoint_every: the reverse mode's segment length (default ``⌈√T⌉``, as
            :func:`~hypergrad.lrs_opt.lrs_opt`; ``T`` is faster and keeps all ``T`` states of every member).
        chunk_size: passed to ``vmap`` (members computed per chunk, to bound memory).
        progress: a progress bar over the iterations.

    Returns:
        ``N`` :class:`~hypergrad.lrs_opt.LrsOptResult` (no saving or resuming here: use :func:`~hypergrad.lrs_opt.lrs_opt` per
        member for that; ``meta["wall_time_s"]`` is the population's wall time).
    """
    opts = _check_run(iterations, step_size, max_lr, optimizer, optimizer_options)
    if isinstance(params, dict) or not isinstance(params, Sequence) or not params:
        raise ValueError("params must be a non-empty sequence of N weight dicts, one per member")
    for i, p in enumerate(params):
        if isinstance(p, State) or not isinstance(p, dict) or not p:
            raise ValueError(f"params[{i}] must be a non-empty dict of tensors (a weight dict)")
        _checks.check_params(p, f"params[{i}]")
    n = len(params)
    theta0 = stack_params(params)
    like = next(iter(theta0.values()))
    if any(v.dtype != like.dtype or v.device != like.device for v in theta0.values()):
        raise ValueError("the members' weights must share one dtype and one device")
    schedules = _member_schedules(lrs, n, like)
    T = len(schedules[0])
    if not isinstance(batches, Sequence) or isinstance(batches, (str, bytes)) or len(batches) != n:
        got = len(batches) if isinstance(batches, Sequence) else _checks.describe(batches)
        raise ValueError(f"batches must hold one entry per member ({n}: T minibatches or a "
                         f"function of the iteration each), got {got}")
    results = [LrsOptResult(s.tolist(), [], 0, _settings(dyn, params[i], params[i], s, batches[i],
                                                         step_size, max_lr, optimizer, opts, None))
               for i, s in enumerate(schedules)]
    ostates = [_outer_init(optimizer, s) for s in schedules]
    alive = list(range(n))
    start = time.perf_counter()
    for it in _progress(range(iterations), progress, 0, iterations):
        if not alive:
            break
        its = [_member_batches(batches[i], i, it, T) for i in alive]
        sub = theta0 if len(alive) == n else {k: v[alive] for k, v in theta0.items()}
        try:
            stacked = [_stack_members([b[t] for b in its]) for t in range(T)]
        except (RuntimeError, TypeError, ValueError) as e:
            raise ValueError(f"iteration {it}: the members' minibatches cannot be stacked (each "
                             f"minibatch t must have the same structure and shapes for every "
                             f"member): {e}") from None
        values, grads, failures = hypergradients(
            dyn, sub, torch.stack([schedules[i] for i in alive]), stacked, objective,
            checkpoint_every=checkpoint_every, chunk_size=chunk_size)
        for j, i in enumerate(list(alive)):
            result, err = results[i], failures[j]
            if err is not None:             # keep what was done, say where it diverged
                result.diverged = {"iteration": it, "step": err.step, "message": err.reason,
                                   "lrs": result.lrs}
                result.lrs = result.previous if result.previous is not None else result.lrs
                alive.remove(i)
                continue
            result.previous = result.lrs
            schedules[i], ostates[i] = _outer_step(optimizer, opts, schedules[i], grads[j],
                                                   ostates[i], step_size, max_lr)
            result.history.append(float(values[j]))
            result.iterations = it + 1
            result.lrs = schedules[i].tolist()
    meta = run_metadata(time.perf_counter() - start)
    for i, result in enumerate(results):
        result.meta = dict(meta)
        result.optimizer_state = _state_to_json(ostates[i]) if optimizer != "pgd" else None
    return results


def _member_schedules(lrs, n: int, like: torch.Tensor) -> list[torch.Tensor]:
    """``N`` checked schedules from one shared schedule or ``N`` of them."""
    per_member = (lrs.ndim == 2 if isinstance(lrs, torch.Tensor) else
                  isinstance(lrs, Sequence) and not isinstance(lrs, (str, bytes)) and len(lrs) > 0
                  and not isinstance(lrs[0], (int, float)) and not (
                      isinstance(lrs[0], torch.Tensor) and lrs[0].ndim == 0))
    if not per_member:
        one = check_schedule(lrs, like=like)
        return [one.clone() for _ in range(n)]
    if len(lrs) != n:
        raise ValueError(f"lrs holds {len(lrs)} schedules for {n} members")
    out = []
    for i, s in enumerate(lrs):
        try:
            out.append(check_schedule(s, like=like).clone())
        except (TypeError, ValueError) as e:
            raise type(e)(f"member {i}'s schedule: {e}") from None
        if len(out[i]) != len(out[0]):
            raise ValueError(f"member {i}'s schedule has {len(out[i])} learning rates, member "
                             f"0's has {len(out[0])}: the members must share T")
    return out


def _member_batches(batches, i: int, it: int, T: int) -> list:
    """Member ``i``'s ``T`` minibatches of iteration ``it``."""
    its = batches(it) if callable(batches) else batches
    if isinstance(its, (str, bytes, torch.Tensor)) or not hasattr(its, "__iter__"):
        raise ValueError(f"member {i}'s minibatches of iteration {it} must be a sequence of T "
                         f"minibatches, got {_checks.describe(its)}")
    its = list(its)
    if len(its) != T:
        raise ValueError(f"member {i} has {len(its)} minibatches at iteration {it}, but its "
                         f"schedule has T = {T} learning rates")
    return its


def _stack_members(items: list):
    """One minibatch from the members' (tuples, lists and dicts of tensors) with a leading
    member dimension."""
    first = items[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(items)
    if isinstance(first, dict):
        if any(not isinstance(x, dict) or list(x) != list(first) for x in items):
            raise ValueError("the members' minibatches have other keys")
        return {k: _stack_members([x[k] for x in items]) for k in first}
    if isinstance(first, (tuple, list)):
        if any(not isinstance(x, (tuple, list)) or len(x) != len(first) for x in items):
            raise ValueError("the members' minibatches have other lengths")
        return type(first)(_stack_members([x[j] for x in items]) for j in range(len(first)))
    raise TypeError(f"a minibatch must be made of tensors (tuples, lists, dicts), got "
                    f"{_checks.describe(first)}")
