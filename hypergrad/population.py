"""Populations: N online runs of Algorithm 1 as one batched computation (``torch.func.vmap``).

The paper's sweeps are embarrassingly parallel: seeds × hyper-learning rates × methods, all
with the same model shape and the same dynamics. :func:`run_population` runs N members of
:class:`~hypergrad.online.Marthe` at once — each with its own initial weights, minibatches,
validation batches and ``(η_0, β, μ, κ)`` — by ``vmap`` over one functional step of
Algorithm 1. The step is written with ``torch.func`` (``grad_and_value`` for ``∇E`` and
``∇L_t``, ``vjp`` of the gradient for ``∇²L_t θ(μ_t Z_t)``) and the hand-derived tangent of the
elementwise update (forward-mode AD of the update when the optimizer has none); the steps
2–3 (β, η, μ, ρ) are the same tensor operations as ``Marthe._hyper_update``, with
``torch.where`` choosing per member between fixed and adaptive μ, fixed and adaptive β.

A member *diverges* by the rules of :func:`~hypergrad.loop.run_online` (a non-finite
``E``, ``Δ_t``, ``η_t`` or ``L_t``; or the blow-up rule): its state is then frozen (``where``),
its step is recorded, and the others go on. Every member equals its serial run
(``tests/test_population.py``: float64 to 1e-10; float32 to rounding).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.func import grad_and_value, jvp, vjp, vmap

from hypergrad.dynamics import DivergenceError, Dynamics, Params
from hypergrad.loop import History, blowup
from hypergrad.online import Marthe, _check_number, hyper_dtype
from hypergrad.tree import tree_dot, tree_map, tree_zeros_like

__all__ = ["Population", "run_population", "stack_params"]


def stack_params(params: Sequence[Params]) -> Params:
    """N weight dicts (same names and shapes) as one dict of ``(N, ...)`` tensors."""
    params = list(params)
    if not params:
        raise ValueError("params must hold at least one member")
    names = list(params[0])
    for i, p in enumerate(params):
        if list(p) != names or any(p[k].shape != params[0][k].shape for k in names):
            raise ValueError(f"member {i} has other weights than member 0 (names or shapes)")
    return {k: torch.stack([p[k].detach() for p in params]) for k in names}


@dataclass
class Population:
    """The result of :func:`run_population`.

    ``params``: the final weights, ``(N, ...)`` per name (a diverged member's at its last good
    step); ``histories``: one :class:`~hypergrad.loop.History` per member (a diverged
    member's up to, not including, its failing step: what its serial run recorded before it
    raised); ``diverged``: per member ``None`` or the :class:`~hypergrad.dynamics.DivergenceError`
    its serial run raises (same step, same reason).
    """

    params: Params
    histories: list[History]
    diverged: list[DivergenceError | None]


def _per_member(name: str, value, n: int, lo=0.0, hi=math.inf, allow_none=False, allow_auto=False):
    vals = list(value) if isinstance(value, (list, tuple)) else [value] * n
    if len(vals) != n:
        raise ValueError(f"{name} has {len(vals)} values for {n} members")
    out = []
    for v in vals:
        if (allow_none and v is None) or (allow_auto and isinstance(v, str) and v == "auto"):
            out.append(v)
        else:
            out.append(_check_number(name, v, lo, hi))
    return out


def _step_fn(dyn: Dynamics, objective: Callable, t: int, hvp: bool, any_adaptive: bool,
             any_kappa: bool):
    """One member's step ``t`` of Algorithm 1 as a pure function (vmapped by the caller)."""
    def loss_fn(theta, batch):
        return dyn.loss(theta, batch), {}

    def step(carry, hp, batch, vbatch):
        w, Z, lr, beta, mu, rho, delta_prev, B_prev = carry
        lr0, beta0, mu_fixed, kappa, adaptive, has_kappa = hp
        theta = w["params"]
        like = next(iter(theta.values()))
        hd = lr.dtype
        # 1. g = ∇E(θ(w_t)); Δ_t = gᵀθ(Z_t); p_t = gᵀθ(B_{t-1})
        g_E, value = grad_and_value(lambda th: objective(th, vbatch))(theta)
        delta = tree_dot(g_E, Z["params"]).to(hd)
        # 2. β_t, η_t
        if t >= 1:
            if any_kappa:
                beta = torch.where(has_kappa, torch.clamp(beta + kappa * delta * delta_prev, min=0.0),
                                   beta)
            lr = torch.clamp(lr - beta * delta, min=0.0)
        # 3. μ_t, ρ_t
        if any_adaptive and t >= 1:
            p = tree_dot(g_E, B_prev).to(hd)
            nz = p != 0
            c = torch.where(nz, torch.clamp(delta / torch.where(nz, p, torch.ones_like(p)), 0.0, 1.0),
                            torch.zeros_like(p))
            rho_a = (rho + 1.0) * mu
            mu_a = c ** (1.0 / (1.0 + rho_a))
            mu, rho = torch.where(adaptive, mu_a, mu_fixed), torch.where(adaptive, rho_a, rho)
        elif any_adaptive:                      # t = 0: μ_0 = 0 for the adaptive members
            mu = torch.where(adaptive, torch.zeros_like(mu), mu_fixed)
        else:
            mu = mu_fixed
        # 4. (w_{t+1}, Z_{t+1}) = (Φ_t(w_t, η_t), μ_t A_t Z_t + B_t)
        eta = lr.to(like.dtype)
        if hvp and t >= 1:                      # Z_0 = 0: no A_0 Z_0 at t = 0
            dw = tree_map(lambda z: mu.to(like.dtype) * z, Z)
            # ∇²L θ(μZ) by reverse-over-reverse (vjp of the gradient; H is symmetric): measured
            # ~15 % faster under vmap than forward-over-reverse on the MNIST MLPs
            g, pullback, (loss, _) = vjp(lambda th: grad_and_value(loss_fn, has_aux=True)(th, batch),
                                         theta, has_aux=True)
            hv = pullback(dw["params"])[0]
        else:
            dw, hv = None, None
            g, (loss, _) = grad_and_value(loss_fn, has_aux=True)(theta, batch)
        if dyn.update_jvp is not None:
            w_next, Z_next, B = dyn.update_jvp(w, g, eta, t, dw, hv)
        else:
            one = torch.ones_like(eta)
            w_next, B = jvp(lambda e: dyn.update(w, g, e, t), (eta,), (one,))
            if dw is not None:
                _, Z_next = jvp(lambda w_, g_, e: dyn.update(w_, g_, e, t), (w, g, eta), (dw, hv, one))
            else:
                Z_next = B
        B_next = B["params"] if any_adaptive else B_prev     # (zeros, unused, without adaptive μ)
        info = torch.stack([lr, mu, beta, delta, loss.detach().to(hd), value.detach().to(hd)])
        return (w_next, Z_next, lr, beta, mu, rho, delta, B_next), info

    return step


def run_population(dyn: Dynamics, params: Sequence[Params] | Params, batches: Sequence,
                   objective: Callable, val_batches, *, lr=0.01, beta=1e-4, mu="auto",
                   kappa=None, max_loss_ratio: float = 10.0, check_every: int | None = None,
                   chunk_size: int | None = None) -> Population:
    """Run N members of :class:`~hypergrad.online.Marthe` on ``dyn`` as one ``vmap``-ed computation.

    Args:
        dyn: the dynamics, shared (same model shape and optimizer); models without buffers.
        params: N weight dicts, or one dict of ``(N, ...)`` tensors.
        batches: one training batch per step, each a tree of ``(N, ...)`` tensors (member ``i``'s
            minibatch at index ``i``), e.g. ``(x[N, B, 784], y[N, B])``.
        objective: ``E(params, val_batch) -> scalar`` (one member's, unbatched).
        val_batches: one validation batch per step (trees of ``(N, ...)`` tensors), or one
            such tree used at every step.
        lr, beta, mu, kappa: ``η_0``, ``β_0``, ``μ`` (a number or ``"auto"``), ``κ`` (``None``
            or a number): one value for all members or a sequence of N.
        max_loss_ratio: the blow-up rule of :func:`~hypergrad.loop.run_online`.
        check_every: read the divergence record every k steps and stop when every member has
            diverged (``None``: never before the end; the steps never wait for the device).
        chunk_size: passed to ``vmap`` (members computed per chunk, to bound memory).

    Member ``i`` equals ``run_online(Marthe(dyn, lr[i], beta[i], mu[i], kappa[i]), params[i],
    [b[i] for b in batches], [lambda p: objective(p, v[i]) for v in val_batches])``.
    """
    theta0 = params if isinstance(params, dict) else stack_params(params)
    if not theta0:
        raise ValueError("params must be a non-empty dict of tensors")
    n = next(iter(theta0.values())).shape[0]
    lrs = _per_member("lr", lr, n)
    betas = _per_member("beta", beta, n)
    mus = _per_member("mu", mu, n, 0.0, 1.0, allow_auto=True)
    kappas = _per_member("kappa", kappa, n, allow_none=True)
    if not (isinstance(max_loss_ratio, (int, float)) and max_loss_ratio > 0):
        raise ValueError(f"max_loss_ratio must be a number > 0, got {max_loss_ratio!r}")
    if check_every is not None and not (isinstance(check_every, int) and check_every >= 1):
        raise ValueError(f"check_every must be an integer >= 1 or None, got {check_every!r}")
    steps = len(batches)
    per_step_val = isinstance(val_batches, (list,)) and len(val_batches) > 0 and \
        not isinstance(val_batches[0], torch.Tensor)
    if per_step_val and len(val_batches) < steps:
        raise ValueError(f"val_batches has {len(val_batches)} entries but batches has {steps}")
    like = next(iter(theta0.values()))
    dev, hd = like.device, hyper_dtype(like.device)
    vec = lambda xs: torch.tensor(xs, dtype=hd, device=dev)  # noqa: E731
    adaptive = torch.tensor([m == "auto" for m in mus], device=dev)
    has_kappa = torch.tensor([k is not None for k in kappas], device=dev)
    hp = (vec(lrs), vec(betas), vec([0.0 if m == "auto" else m for m in mus]),
          vec([0.0 if k is None else k for k in kappas]), adaptive, has_kappa)
    any_adaptive = any(m == "auto" for m in mus)
    any_kappa = any(k is not None for k in kappas)
    hvp = any(m == "auto" or m != 0.0 for m in mus)            # all HD: no HVP, ever

    theta0 = {k: v.detach().clone() for k, v in theta0.items()}
    w = {"params": theta0, **{s: tree_zeros_like(theta0) for s in dyn.slots}}
    zeros = torch.zeros(n, dtype=hd, device=dev)
    carry = (w, tree_zeros_like(w), hp[0].clone(), hp[1].clone(), zeros.clone(), zeros.clone(),
             zeros.clone(), tree_zeros_like(theta0))
    fail_t = torch.full((n,), -1, dtype=torch.long, device=dev)
    fail_code = torch.zeros(n, dtype=torch.long, device=dev)
    first, rows = None, []
    on_cpu = dev.type == "cpu"
    for t in range(steps):
        vb = val_batches[t] if per_step_val else val_batches
        fn = vmap(_step_fn(dyn, objective, t, hvp, any_adaptive, any_kappa),
                  in_dims=(0, 0, 0, 0), chunk_size=chunk_size)
        new, info = fn(carry, hp, batches[t], vb)
        rows.append(info)
        lr_t, mu_t, beta_t, delta_t, loss_t, value_t = info.unbind(1)
        first = loss_t if first is None else first
        fin = torch.isfinite
        code = torch.where(~(fin(delta_t) & fin(value_t)), 1,
                           torch.where(~fin(lr_t), 2, torch.where(~fin(loss_t), 3, 0)))
        if max_loss_ratio != math.inf:
            code = torch.where((code == 0) & blowup(loss_t, first, max_loss_ratio), 4, code)
        newly = (fail_t < 0) & (code > 0)
        fail_t = torch.where(newly, t, fail_t)
        fail_code = torch.where(newly, code, fail_code)
        alive = fail_t < 0
        # a diverged member keeps its last good state; on the CPU a read of `alive` costs
        # nothing, and the `where` over the whole carry (slow on the CPU) is skipped while
        # every member is alive; elsewhere it is never read (no sync per step)
        if on_cpu and bool(alive.all()):
            carry = new
        else:
            def keep(a, b, alive=alive):
                return torch.where(alive.view(-1, *([1] * (a.ndim - 1))), a, b)

            carry = tuple(tree_map(keep, a, b) for a, b in zip(new, carry, strict=True))
        if check_every is not None and (t + 1) % check_every == 0 and not bool(alive.any()):
            break
    table = torch.stack(rows).cpu().tolist() if rows else []          # (T, N, 6): one read
    fails, codes = fail_t.tolist(), fail_code.tolist()
    firsts = first.tolist() if first is not None else [math.nan] * n
    histories, diverged = [], []
    for i in range(n):
        h = History.empty()
        stop = fails[i] if fails[i] >= 0 else len(table)
        for row in table[:stop]:
            for name, v in zip(("lr", "mu", "beta", "hypergradient", "loss", "objective"), row[i],
                               strict=True):
                getattr(h, name).append(v)
        histories.append(h)
        if fails[i] < 0:
            diverged.append(None)
        elif codes[i] == 4:
            diverged.append(DivergenceError(fails[i], f"the training loss blew up "
                                            f"({table[fails[i]][i][4]:.3g} > {max_loss_ratio} × "
                                            f"{firsts[i]:.3g})", blowup=True))
        else:
            diverged.append(DivergenceError(fails[i], Marthe.FAILURES[codes[i]]))
    return Population(carry[0]["params"], histories, diverged)
