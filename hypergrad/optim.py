r"""MARTHE as a drop-in ``torch.optim`` optimizer, with one learning rate per parameter group.

::

    opt = hypergrad.optim.Marthe(model.parameters(), optimizer="sgd", lr=0.1, momentum=0.9,
                                 weight_decay=5e-4, beta=1e-6, mu="auto")
    for (x, y), (xv, yv) in zip(train_loader, val_batches):
        loss = opt.step(lambda: F.cross_entropy(model(x), y),       # L_t
                        lambda: F.cross_entropy(model(xv), yv))     # E on a validation batch

It is Algorithm 1 of :mod:`hypergrad.online`, not a second implementation: the
hyper-learning-rate, learning-rate and μ updates (steps 2–3) are those of
:class:`hypergrad.online.Marthe` itself (its ``_hyper_update``), and the weight update with
its tangent (step 4) is the dynamics' own :meth:`~hypergrad.dynamics.Dynamics.update_tangent`
(:func:`~hypergrad.dynamics.sgd`, :func:`~hypergrad.dynamics.adam`, with ``torch.optim``'s
semantics). What differs is only where the derivatives come from: the closures compute the
losses with the model's own parameters, and the optimizer differentiates them with autograd
(``∇L_t`` and ``∇²L_t v`` by double backward, ``∇E``). With one group, the trajectory
(weights and ``η_t``) equals :class:`hypergrad.online.Marthe`'s to 1e-10 in float64 (tested).

**One learning rate per group.** With ``G`` parameter groups ``η`` is a vector
``(η^1, …, η^G)``. Each group has its own tangent ``Z^g = ∂w_t/∂η^g`` over the *whole* state
(the Hessian couples the groups):

.. math::

    Z^g_{t+1} = μ^g_t A_t Z^g_t + B^g_t, \qquad Δ^g_t = ∇E(w_t)^\top Z^g_t,

where ``B^g_t`` is the η-derivative of the update restricted to group ``g`` (zero on the other
groups' weights). The ``G`` Hessian-vector products of a step are one batched call
(``torch.autograd.grad(..., is_grads_batched=True)``, which vectorises with ``vmap``). Each
group runs steps 2–3 with its own ``β^g``, ``μ^g``, ``κ`` and clip, and may have its own
momentum, Nesterov, betas, eps and weight decay. The optimizer kind (``"sgd"`` or ``"adam"``)
is one for all groups.

**What the state holds.** ``param_groups[g]["lr"]`` is ``η^g`` as a 0-dim float64 tensor on
the weights' device (``torch.optim`` accepts tensor rates; ``float(group["lr"])`` reads it):
``η_0`` before the first step, and after step ``t`` the ``η_t`` that step used (what a logger
reads after ``step``). Each group's ``β_t``, ``μ_t``, ``ρ_t``, ``Δ_t`` and step count are in
``param_groups[g]["hyper"]``; the tangents, the previous ``B`` (for ``mu="auto"``) and the
optimizer slots are in ``state[p]``. So ``state_dict``/``load_state_dict`` resume bit-exactly
(tested: interrupted, reloaded into a fresh model and optimizer, continued).

**A learning-rate scheduler** (or anything else) that writes ``group["lr"]`` between steps
resets ``η``: the next step's update ``η_t = max(η_{t-1} − β_t Δ_t, 0)`` starts from the
written value, and the tangents are kept (they are derivatives of the weights with respect to
the rates, whatever their values).

**Closures.** ``closure()`` returns the training loss ``L_t`` and ``val_closure()`` the
objective ``E`` (both at the current weights, ``E`` first); each is called once per step, and
the optimizer differentiates what they return. A closure that calls ``backward()`` itself is
an error (it would consume the graph). ``val_closure`` may be given once to the constructor,
for loops that only ever call ``step(closure)``. The closures run the model in whatever mode
it is in: with BatchNorm, evaluate ``E`` under ``model.eval()`` (inside ``val_closure``) if
the validation batch must not move the running statistics.

Only parameters with ``requires_grad=True`` are optimised (the others are skipped, as
``torch.optim`` skips a parameter without a gradient); a trainable parameter that a loss does
not use gets a zero gradient there (as in :class:`hypergrad.trainer.ModuleTrainer`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from hypergrad import online
from hypergrad.dynamics import check_finite, make_dynamics
from hypergrad.online import OnlineState, StepInfo, hyper_dtype

__all__ = ["Marthe", "HD", "RTHO"]

_SGD_OPTIONS = ("momentum", "weight_decay", "nesterov")
_ADAM_OPTIONS = ("betas", "eps", "weight_decay")


class Marthe(torch.optim.Optimizer):
    """MARTHE (Algorithm 1) as a ``torch.optim.Optimizer``; ``η`` per parameter group.

    Args:
        params: parameters or parameter groups, as for any ``torch.optim`` optimizer; a
            group may override every option below except ``optimizer``.
        optimizer: ``"sgd"`` (``momentum``, ``nesterov``, ``weight_decay``) or ``"adam"``
            (``betas``, ``eps``, ``weight_decay``): the inner dynamics.
        lr: ``η_0 ≥ 0``.
        beta: the hyper-learning rate ``β_0 ≥ 0``.
        mu: ``μ ∈ [0, 1]`` fixed (0 is HD, 1 is RTHO), or ``"auto"`` (Appendix A).
        kappa: ``None`` keeps ``β`` fixed; ``κ ≥ 0`` adapts it (Section 4).
        clip: ``None``, or ``c > 0`` to clip ``Δ_t`` to ``[−c, c]`` (the authors' release).
        weight_decay_beta: ``None`` keeps the weight decay ``λ`` fixed; a number ``β_λ ≥ 0``
            tunes it online like ``η``: its own tangent ``Y^g_{t+1} = μ A_t Y^g_t + C^g_t``
            with ``C_t = ∂Φ_t/∂λ = ∂U/∂g · θ`` (coupled decay enters as ``∇L + λθ``),
            ``Δ^λ_t = ∇E(w_t)ᵀ θ(Y^g_t)`` and ``λ_t = max(λ_{t-1} − β_λ Δ^λ_t, 0)``, per
            group; ``group["weight_decay"]`` holds ``λ_t`` (a float: reading it is one host
            synchronisation a step).
        val_closure: the objective ``E``, if every step uses the same one.
        check: raise :class:`~hypergrad.dynamics.DivergenceError` (naming the step) when
            ``E``, ``Δ_t``, ``η_t`` or ``L_t`` is not finite; the weights and the state are
            then left as they were. Checking reads these numbers on the host once a step;
            ``check=False`` makes a step free of host synchronisation.
    """

    #: The μ that every group must have, or ``None`` for any (:class:`HD` and :class:`RTHO`
    #: set it to 0 and 1).
    fixed_mu: float | None = None

    def __init__(self, params: Iterable, optimizer: str = "sgd", lr: float = 0.01, *,
                 momentum: float | None = None, nesterov: bool | None = None,
                 weight_decay: float = 0.0, betas: tuple[float, float] | None = None,
                 eps: float | None = None,
                 beta: float = 1e-4, mu: float | str = "auto", kappa: float | None = None,
                 clip: float | None = None, weight_decay_beta: float | None = None,
                 val_closure: Callable | None = None, check: bool = True):
        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
        if self.fixed_mu is not None:
            mu = self.fixed_mu
        self.kind, self.val_closure, self.check = optimizer, val_closure, bool(check)
        given = dict(momentum=momentum, nesterov=nesterov, betas=betas, eps=eps)
        own = _SGD_OPTIONS if optimizer == "sgd" else _ADAM_OPTIONS
        foreign = sorted(k for k, v in given.items() if v is not None and k not in own)
        if foreign:
            raise ValueError(f"optimizer={optimizer!r} takes no option {foreign}")
        if optimizer == "sgd":
            kinds = dict(momentum=0.0 if momentum is None else momentum,
                         nesterov=bool(nesterov))
        else:
            kinds = dict(betas=(0.9, 0.999) if betas is None else tuple(betas),
                         eps=1e-8 if eps is None else eps)
        defaults = dict(lr=lr, **kinds, weight_decay=weight_decay, beta=beta, mu=mu,
                        kappa=kappa, clip=clip, weight_decay_beta=weight_decay_beta)
        self._tuners: dict[tuple, online.Marthe] = {}
        super().__init__(params, defaults)

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict) -> None:
        """Add a group (before the first step only: its rate needs a tangent from ``t = 0``).

        Its options are checked here (a clear ``ValueError`` for a negative or NaN rate, an
        option the optimizer does not take, or a μ that :class:`HD`/:class:`RTHO` fix)."""
        if any(g.get("hyper", {}).get("t", 0) > 0 for g in self.param_groups):
            raise RuntimeError("a parameter group cannot be added after the first step: its "
                               "learning rate would have no tangent from t = 0 (build a new "
                               "optimizer)")
        extra = set(param_group) - set(self.defaults) - {"params", "param_names"}
        if extra:
            raise ValueError(f"optimizer={self.kind!r} takes no option {sorted(extra)}")
        if self.fixed_mu is not None and "mu" in param_group \
                and param_group["mu"] != self.fixed_mu:
            raise ValueError(f"{type(self).__name__} has μ = {self.fixed_mu} in every group, "
                             f"got mu={param_group['mu']!r}")
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        self._tuner(group, check_lr=True)

    def _options(self, group: dict) -> dict:
        """The dynamics' options of ``group`` (momentum, Nesterov, weight decay; betas, eps)."""
        return {k: group[k] for k in (_SGD_OPTIONS if self.kind == "sgd" else _ADAM_OPTIONS)}

    def _tuner(self, group: dict, check_lr: bool = False) -> online.Marthe:
        """The functional tuner of ``group`` (its dynamics and steps 2–3), built once per
        distinct set of options; validates them."""
        opts = self._options(group)
        if group["weight_decay_beta"] is not None:    # λ moves: the step builds its dynamics
            online._check_number("weight_decay_beta", group["weight_decay_beta"])
            opts["weight_decay"] = 0.0
        key = (tuple(opts.items()), group["beta"], group["mu"], group["kappa"], group["clip"])
        tuner = self._tuners.get(key)
        if tuner is None:
            dyn = make_dynamics(self.kind, _no_loss, **opts)
            tuner = online.Marthe(dyn, lr=0.0, beta=group["beta"], mu=group["mu"],
                                  kappa=group["kappa"], clip=group["clip"])
            self._tuners[key] = tuner
        if check_lr:
            online._check_number("lr", group["lr"])
        return tuner

    # ------------------------------------------------------------------ the step
    def step(self, closure: Callable | None = None, val_closure: Callable | None = None
             ) -> torch.Tensor:
        """One iteration ``t`` of Algorithm 1 for every group; returns ``L_t(w_t)`` (detached).

        ``closure()`` returns the training loss, ``val_closure()`` (or the constructor's) the
        objective ``E``; both are needed."""
        if closure is None:
            raise ValueError(f"{type(self).__name__}.step needs the training loss as a "
                             "closure: opt.step(lambda: loss_fn(model(x), y), val_closure)")
        val_closure = val_closure if val_closure is not None else self.val_closure
        if val_closure is None:
            raise ValueError(f"{type(self).__name__}.step needs the objective E: pass "
                             "val_closure to step() or to the constructor")
        groups = [(g, [p for p in g["params"] if p.requires_grad]) for g in self.param_groups]
        groups = [(g, ps) for g, ps in groups if ps]
        if not groups:
            raise ValueError("no parameter of this optimizer requires a gradient")
        params = [p for _, ps in groups for p in ps]
        offsets = [0]
        for _, ps in groups:
            offsets.append(offsets[-1] + len(ps))
        G = len(groups)
        tuners = [self._tuner(g) for g, _ in groups]
        like = params[0]
        decay = any(g["weight_decay_beta"] is not None for g, _ in groups)
        for (group, ps), tuner in zip(groups, tuners, strict=True):
            for p in ps:
                self._init_state(p, G, tuner.dyn.slots, decay)
            self._init_hyper(group, like)
        t = groups[0][0]["hyper"]["t"]

        # 1. E(w_t), g = ∇E, Δ^g_t = gᵀ θ(Z^g_t) (and p^g_t = gᵀ θ(B^g_{t-1}) for μ = "auto")
        value, gE = _value_and_grad(val_closure, params, "the objective (val_closure)")
        deltas, ps_ = [], []
        for i, ((_, ps), tuner) in enumerate(zip(groups, tuners, strict=True)):
            delta = self._along(gE, params, "Z", i)
            if tuner.clip is not None:
                delta = torch.clamp(delta, -tuner.clip, tuner.clip)
            deltas.append(delta)
            p_t = None
            if tuner.adaptive_mu and t >= 1:
                p_t = sum((gE[offsets[i] + j] * self.state[q]["B_prev"]).sum()
                          for j, q in enumerate(ps))
                p_t = torch.as_tensor(p_t, dtype=delta.dtype, device=delta.device)
            ps_.append(p_t)

        # and, where λ adapts, Δ^{λ,g}_t = gᵀ θ(Y^g_t)
        adapt = [g["weight_decay_beta"] is not None for g, _ in groups]
        wd_deltas = [self._along(gE, params, "Y", i) if adapt[i] else None for i in range(G)]

        # 2.–3. β^g_t, η^g_t, μ^g_t, ρ^g_t: the functional tuner's own update; λ^g_t
        hyper, lams = [], []
        for (group, _), tuner, delta, p_t, wd_delta in zip(groups, tuners, deltas, ps_,
                                                           wd_deltas, strict=True):
            h = group["hyper"]
            view = OnlineState(None, None, _rate(group["lr"], delta), h["beta"], h["mu"],
                               h["rho"], h["delta"], None, t)
            hyper.append(tuner._hyper_update(view, delta, p_t))
            lam = _rate(group["weight_decay"], delta)
            if wd_delta is not None and t >= 1:   # λ_t = max(λ_{t-1} − β_λ Δ^λ_t, 0)
                lam = torch.clamp(lam - group["weight_decay_beta"] * wd_delta, min=0.0)
            lams.append(lam)
        # the dynamics of each group at its λ_t (a new one where λ moves: a host read)
        dyns = [make_dynamics(self.kind, _no_loss, **{**self._options(g), "weight_decay":
                                                      float(lams[i])})
                if adapt[i] else tuners[i].dyn for i, (g, _) in enumerate(groups)]

        # 4. L_t, ∇L_t and the G Hessian-vector products ∇²L_t θ(μ^g Z^g) in one call
        # (and ∇²L_t θ(μ^g Y^g) for the λ tangents): a direction is (tangent, group)
        uses_hvp = [tuner.needs_hvp and not (tuner.adaptive_mu and t == 0) for tuner in tuners]
        dirs = [("Z", k) for k in range(G) if uses_hvp[k]]
        dirs += [("Y", k) for k in range(G) if uses_hvp[k] and adapt[k]]
        mus = [hyper[k][2].to(like.dtype) for k in range(G)]
        V = [_scaled(self.state[p], dirs, mus) for p in params] if dirs else None
        loss, gL, hv = _grad_and_hvps(closure, params, V)

        # the elementwise update and its tangents, group by group: Z^i_{t+1} = μ^i A_t Z^i
        # + B^i on group i's weights (the fast path of the functional tuner), and the other
        # directions' A_t μ^k Z^k there, all at once (a leading dimension, no ∂/∂η term)
        new_w, new_T, new_B = {}, {}, {}
        for i in range(G):
            dyn, sl = dyns[i], range(offsets[i], offsets[i + 1])
            eta = hyper[i][0].to(like.dtype)
            w = {"params": {j: params[j].detach() for j in sl},
                 **{s: {j: self.state[params[j]][s] for j in sl} for s in dyn.slots}}
            g = {j: gL[j] for j in sl}

            def tangents(ds, sl=sl, dyn=dyn):   # (μ^k T^k, ∇²L μ^k T^k) on group i, (T, k) ∈ ds
                pos = [dirs.index(d) for d in ds]
                dw = {"params": {j: _rows(V[j], pos) for j in sl},     # the μT of the HVPs
                      **{s: {j: _scaled(self.state[params[j]], ds, mus, s) for j in sl}
                         for s in dyn.slots}}
                return dw, {j: _rows(hv[j], pos) for j in sl}

            own = None
            if uses_hvp[i]:
                dw, dg = tangents([("Z", i)])
                own = (_first(dw), {j: x[0] for j, x in dg.items()})
            w_next, tan, B = dyn.update_tangent(w, g, eta, t, *(own or (None, None)),
                                                need_B=tuners[i].adaptive_mu)
            others = [d for d in dirs if d != ("Z", i)]
            cross = (dyn.update_tangent(w, g, eta, t, *tangents(others), with_lr=False)[1]
                     if others else None)
            # C^i = ∂U/∂λ on group i: λ enters as ∇L + λθ, so it is ∂U/∂g · θ
            C = (dyn.update_tangent(w, g, eta, t, None, w["params"], with_lr=False)[1]
                 if adapt[i] else None)
            new_w[i], new_B[i], new_T[i] = w_next, B, (tan, others, cross, C)

        infos = [StepInfo(t, h[0], h[2], h[1], d, loss.detach(), value.detach())
                 for h, d in zip(hyper, deltas, strict=True)]
        if self.check:
            for info in infos:
                check_finite(t, "the objective or its hypergradient", info.hypergradient,
                             info.objective)
                check_finite(t, "the learning rate", info.lr)
            for i in range(G):
                if adapt[i]:
                    check_finite(t, "the weight-decay hypergradient", wd_deltas[i])
                    check_finite(t, "the weight decay", lams[i])
            check_finite(t, "the training loss", loss)

        # write: weights, slots, tangents, B_{t-1}, hyper state
        with torch.no_grad():
            for i, (group, _) in enumerate(groups):
                dyn = dyns[i]
                tan, others, cross, C = new_T[i]
                for j in range(offsets[i], offsets[i + 1]):
                    p, st = params[j], self.state[params[j]]
                    p.copy_(new_w[i]["params"][j])
                    for s in dyn.slots:
                        st[s] = new_w[i][s][j]
                    if tuners[i].adaptive_mu:
                        st["B_prev"] = new_B[i]["params"][j]
                    for slot in ("params", *dyn.slots):
                        suffix = "" if slot == "params" else "_" + slot

                        def row(d, slot=slot, j=j, cross=cross, others=others):
                            """A_t μ T (no ∂/∂η) along the direction d, or None."""
                            return cross[slot][j][others.index(d)] if d in others else None

                        rows = [tan[slot][j] if k == i else row(("Z", k)) for k in range(G)]
                        st["Z" + suffix] = (rows[0].unsqueeze(0) if G == 1 else torch.stack(
                            [torch.zeros_like(p) if r is None else r for r in rows]))
                        if "Y" in st:
                            rows = [row(("Y", k)) for k in range(G)]
                            if C is not None:           # + C^i on group i's own tangent
                                rows[i] = C[slot][j] if rows[i] is None else rows[i] + C[slot][j]
                            st["Y" + suffix] = torch.stack(
                                [torch.zeros_like(p) if r is None else r for r in rows])
                lr, beta, mu, rho = hyper[i]
                group["lr"] = lr
                if adapt[i]:
                    group["weight_decay"] = float(lams[i])
                group["hyper"] = {"beta": beta, "mu": mu, "rho": rho, "delta": deltas[i],
                                  "t": t + 1}
                if adapt[i]:
                    group["hyper"]["weight_decay_delta"] = wd_deltas[i]
        self.last_step = infos
        return loss.detach()

    def _along(self, g: list, params: list, key: str, i: int) -> torch.Tensor:
        """``gᵀ θ(T^i)``: ``g`` against row ``i`` of the tangents ``key`` (``"Z"``, the
        rates'; ``"Y"``, the weight decays') over all weights, as an online scalar."""
        like = params[0]
        dot = sum((g[j] * self.state[p][key][i]).sum() for j, p in enumerate(params))
        return torch.as_tensor(dot, dtype=hyper_dtype(like.device), device=like.device)

    def _init_state(self, p: torch.nn.Parameter, G: int, slots: tuple,
                    with_decay: bool = False) -> None:
        st = self.state[p]
        if with_decay and "Y" not in st:      # the λ tangents, zero at t = 0
            st["Y"] = p.new_zeros((G, *p.shape))
            for s in slots:
                st["Y_" + s] = p.new_zeros((G, *p.shape))
        if "Z" in st:
            if st["Z"].shape[0] != G:
                raise RuntimeError(f"the state holds tangents for {st['Z'].shape[0]} groups, "
                                   f"the optimizer has {G} with trainable parameters")
            return
        for s in slots:
            st[s] = torch.zeros_like(p, memory_format=torch.preserve_format)
        st["Z"] = p.new_zeros((G, *p.shape))
        for s in slots:
            st["Z_" + s] = p.new_zeros((G, *p.shape))

    @staticmethod
    def _init_hyper(group: dict, like: torch.Tensor) -> None:
        """``η_0``, ``β_0``, ``μ`` = ``ρ`` = ``Δ`` = 0 at the first step; on the weights'
        device afterwards (a state loaded from another device is moved)."""
        dt, dev = hyper_dtype(like.device), like.device
        h = group.get("hyper")
        if h is None:
            zero = lambda: torch.zeros((), dtype=dt, device=dev)  # noqa: E731
            group["hyper"] = {"beta": torch.as_tensor(float(group["beta"]), dtype=dt,
                                                      device=dev),
                              "mu": zero(), "rho": zero(), "delta": zero(), "t": 0}
        else:
            for k in ("beta", "mu", "rho", "delta"):
                h[k] = torch.as_tensor(h[k], dtype=dt, device=dev)

    # ------------------------------------------------------------------ reading
    @property
    def lrs(self) -> list[float]:
        """``η`` of every group as floats (one host synchronisation)."""
        return [float(g["lr"]) for g in self.param_groups]


class HD(Marthe):
    """Hypergradient descent (Baydin et al., 2018): :class:`Marthe` with ``μ = 0`` in every
    group (no Hessian-vector product is ever formed)."""

    fixed_mu = 0.0


class RTHO(Marthe):
    """RTHO (Franceschi et al., 2017): :class:`Marthe` with ``μ = 1`` in every group."""

    fixed_mu = 1.0


# ---------------------------------------------------------------------- autograd plumbing
def _scaled(st: dict, dirs: list, mus: list, slot: str | None = None) -> torch.Tensor:
    """``(μ^k T^k for (T, k) in dirs)`` stacked: rows of the group-stacked tangents ``Z``
    (the rates') and ``Y`` (the weight decays') of one parameter's state, each times its
    group's μ (``slot``: the tangents of an optimizer slot instead of the weights)."""
    suffix = "" if slot is None else "_" + slot
    rows = [mus[k] * st[T + suffix][k] for T, k in dirs]
    return rows[0].unsqueeze(0) if len(rows) == 1 else torch.stack(rows)


def _rows(x: torch.Tensor, pos: list[int]) -> torch.Tensor:
    """``x[pos]``: a view where ``pos`` is a run of consecutive rows, else a copy."""
    if pos == list(range(pos[0], pos[0] + len(pos))):
        return x[pos[0]:pos[0] + len(pos)]
    return x[pos]


def _first(tree: dict) -> dict:
    """The first direction of a tree of stacked tangents."""
    return {k: _first(v) if isinstance(v, dict) else v[0] for k, v in tree.items()}


def _no_loss(*_):
    raise RuntimeError("hypergrad.optim computes the losses from the closures")


def _rate(lr, like: torch.Tensor) -> torch.Tensor:
    """``group["lr"]`` (a float or a tensor, perhaps written by a scheduler) as an online
    scalar; a negative or non-finite float is refused at once."""
    if not isinstance(lr, torch.Tensor):
        lr = online._check_number("lr", lr)
    return torch.as_tensor(lr, dtype=like.dtype, device=like.device)


def _call(closure: Callable, params: list, what: str) -> torch.Tensor:
    """``closure()`` with gradients on, refusing one that calls ``backward`` itself or
    returns something other than a scalar tensor that depends on the weights."""
    before = [(p.grad, None if p.grad is None else p.grad._version) for p in params]
    with torch.enable_grad():
        value = closure()
    after = [(p.grad, None if p.grad is None else p.grad._version) for p in params]
    if any(a[0] is not b[0] or a[1] != b[1] for a, b in zip(after, before, strict=True)):
        raise RuntimeError(f"{what} called backward(): return the loss and let the "
                           "optimizer differentiate it (it needs the graph)")
    if not isinstance(value, torch.Tensor) or value.ndim != 0:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{what} must return a scalar (0-dim) tensor, got {shape}")
    if not value.requires_grad:
        raise ValueError(f"{what} does not depend on the optimizer's parameters (did it "
                         "run under torch.no_grad, or on detached weights?)")
    return value


def _zeros_for_none(params, grads) -> list[torch.Tensor]:
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def _value_and_grad(closure: Callable, params: list, what: str):
    value = _call(closure, params, what)
    grads = torch.autograd.grad(value, params, allow_unused=True)
    return value.detach(), [g.detach() for g in _zeros_for_none(params, grads)]


def _grad_and_hvps(closure: Callable, params: list, V: list[torch.Tensor] | None):
    """``(L, ∇L, ∇²L V)`` from one forward pass: ``V[j]`` stacks ``K`` directions for
    parameter ``j`` (shape ``(K, *p.shape)``) and so does the product. One direction is one
    double-backward call; several are one batched call (``is_grads_batched``, i.e. ``vmap``)."""
    loss = _call(closure, params, "the training loss (closure)")
    grads = _zeros_for_none(params, torch.autograd.grad(
        loss, params, create_graph=V is not None, allow_unused=True))
    hv = None
    if V is not None:
        K = V[0].shape[0]
        live = [j for j, g in enumerate(grads) if g.requires_grad]
        if not live:                            # a loss linear in the weights: H = 0
            out = [None] * len(params)
        elif K == 1:
            out = torch.autograd.grad([grads[j] for j in live], params,
                                      grad_outputs=[V[j][0] for j in live], allow_unused=True)
            out = [None if o is None else o.unsqueeze(0) for o in out]
        else:
            out = torch.autograd.grad([grads[j] for j in live], params,
                                      grad_outputs=[V[j] for j in live],
                                      is_grads_batched=True, allow_unused=True)
        hv = [v.new_zeros(v.shape) if o is None else o for v, o in zip(V, out, strict=True)]
    return loss.detach(), [g.detach() for g in grads], hv
