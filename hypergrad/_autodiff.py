"""The autodiff plumbing, written once: gradients (with a Hessian-vector product), eager
vector-Jacobian products, and tangents of elementwise updates.

The algorithms need three derivatives of the inner map ``Φ_t(w, η) = U(w, ∇L_t(θ(w)), η, t)``:
``∇L_t`` and ``∇²L_t v`` (:func:`value_and_grad`, :func:`grad_and_hvp`), the tangent of the
elementwise update ``U`` (:func:`update_jvp`, forward mode) and vector–Jacobian products of
``Φ_t`` (:func:`vjp`). Each is computed one way, with plain autograd, which has less
per-operation overhead than ``torch.func`` outside function transforms.

A gradient is also computed *inside* ``torch.func`` transforms (``jvp``/``vmap`` of ``Φ_t``:
the forward-mode hypergradient, the tests' references). Plain autograd cannot see the wrapped
tensors there, so :func:`value_and_grad` uses ``torch.func.grad_and_value`` in that case only;
it chooses by the context it runs in, never by a caller's switch. The same function also runs
under an enclosing *autograd* differentiation (:func:`vjp`): it then keeps the graph of the
gradient (``create_graph``) so that second derivatives flow through it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.autograd.forward_ad as fwAD
from torch.func import grad_and_value

from hypergrad.tree import tree_detach, tree_leaves, tree_map, tree_zeros_like

__all__ = ["is_transformed", "value_and_grad", "grad_and_hvp", "vjp", "jvp_eager", "update_jvp"]

Params = dict[str, torch.Tensor]


def is_transformed(x: torch.Tensor) -> bool:
    """True for a tensor wrapped by a ``torch.func`` transform (it has no concrete value)."""
    return torch._C._functorch.is_functorch_wrapped_tensor(x)


def in_transform() -> bool:
    """True while a ``torch.func`` transform (``jvp``, ``vjp``, ``vmap``, ``grad``) is running."""
    return torch._C._functorch.maybe_current_level() is not None


def _not_differentiable(what: str) -> ValueError:
    return ValueError(
        f"{what} does not depend (differentiably) on the weights it is given: it must compute "
        f"from its `params` argument (e.g. torch.func.functional_call(model, params, ...)), "
        f"not from a module's own parameters, and not only through non-differentiable ops")


def _grad(f: Callable, theta: Params, v: Params | None, what: str = "the function"):
    """``(value, aux, ∇f(θ), ∇²f(θ) v or None)`` for ``f(θ) -> (scalar, aux)``.

    Weights that ``f`` does not use get a zero gradient (and a zero Hessian-vector product),
    as ``torch.autograd.grad(..., allow_unused=True)`` with the zeros materialised; an ``f``
    that uses none of them is an error naming ``what`` (almost always a closure over the
    wrong weights, whose hypergradient would silently be zero).
    """
    leaves0 = list(theta.values())
    if in_transform():
        if v is not None:
            raise RuntimeError("a Hessian-vector product inside a torch.func transform is not "
                               "supported: differentiate the gradient with the transform instead")
        g, (value, aux) = grad_and_value(f, has_aux=True)(theta)
        return value, aux, g, None
    names = list(theta)
    # Under an enclosing autograd differentiation (see vjp) the gradient keeps its graph.
    outer = torch.is_grad_enabled() and any(x.requires_grad for x in leaves0)
    leaves = leaves0 if outer else [x.detach().requires_grad_() for x in leaves0]
    with torch.enable_grad():
        value, aux = f(dict(zip(names, leaves, strict=True)))
        if not (isinstance(value, torch.Tensor) and value.requires_grad):
            raise _not_differentiable(what)
        gs = _zeros_for_none(leaves, torch.autograd.grad(
            value, leaves, create_graph=outer or v is not None, allow_unused=True))
        hv = None
        if v is not None:
            # ∇²f v = ∂(∇fᵀv)/∂θ over the gradients that depend on θ (a linear f has none)
            live = [i for i, g in enumerate(gs) if g.requires_grad]
            hvs = torch.autograd.grad([gs[i] for i in live], leaves,
                                      grad_outputs=[v[names[i]] for i in live],
                                      retain_graph=outer, allow_unused=True) if live else [None] * len(leaves)
            hv = dict(zip(names, _zeros_for_none(leaves, hvs), strict=True))
    if not outer:
        value, gs = value.detach(), [x.detach() for x in gs]
    return value, aux, dict(zip(names, gs, strict=True)), hv


def _zeros_for_none(leaves, grads) -> list[torch.Tensor]:
    return [torch.zeros_like(x) if g is None else g for x, g in zip(leaves, grads, strict=True)]


def value_and_grad(f: Callable, theta: Params, what: str = "the function"
                   ) -> tuple[torch.Tensor, Any, Params]:
    """``(f(θ), aux, ∇f(θ))`` for ``f(θ) -> (scalar, aux)`` (``aux`` is not differentiated);
    unused weights get zeros, an ``f`` using none of them is an error naming ``what``."""
    value, aux, g, _ = _grad(f, theta, None, what)
    return value, aux, g


def grad_and_hvp(f: Callable, theta: Params, v: Params, what: str = "the function"
                 ) -> tuple[torch.Tensor, Any, Params, Params]:
    """``(f(θ), aux, ∇f(θ), ∇²f(θ) v)`` in one pass (reverse-over-reverse: double backward).

    Forward-over-reverse (``torch.func.jvp`` of ``torch.func.grad``) gives the same numbers;
    the tests hold the two equal, and ``benchmarks/bench_online.py`` measured double backward
    faster on the CPU (by 15 % on the paper's MLP, 6x on a small CNN).
    """
    return _grad(f, theta, v, what)


def vjp(fn: Callable, *primals, has_aux: bool = False):
    """``torch.func.vjp`` done with plain autograd, outside ``torch.func`` transforms.

    Returns ``(fn(*primals), pullback[, aux])`` with detached outputs; ``pullback(cotangent)``
    returns one cotangent per primal (zeros where the output does not depend on it) and may be
    called once. ``fn`` may call :func:`value_and_grad`: its gradient keeps its graph here.
    """
    inputs = tuple(tree_map(lambda x: x.detach().requires_grad_(), p) for p in primals)
    with torch.enable_grad():
        out = fn(*inputs)
    out, aux = out if has_aux else (out, None)

    def pullback(cotangent):
        flat_in = [x for p in inputs for x in tree_leaves(p)]
        outs = tree_leaves(out)
        cots = tree_leaves(tree_map(lambda _, q: q, out, cotangent))   # aligned with outs
        used = [i for i, o in enumerate(outs) if o.requires_grad]
        grads = torch.autograd.grad([outs[i] for i in used], flat_in,
                                    grad_outputs=[cots[i] for i in used], allow_unused=True
                                    ) if used else [None] * len(flat_in)
        it = iter(torch.zeros_like(x) if g is None else g for x, g in zip(flat_in, grads, strict=True))
        return tuple(tree_map(lambda _: next(it), p) for p in inputs)

    result = (tree_detach(out), pullback)
    return (*result, tree_detach(aux)) if has_aux else result


def jvp_eager(fn: Callable, primals: tuple, tangents: tuple) -> tuple[Any, Any]:
    """``(fn(*primals), J fn · tangents)`` with PyTorch's core forward-mode AD (dual tensors).

    Equal to ``torch.func.jvp`` with less per-operation overhead, which matters for the
    optimizers' elementwise updates (tens of small ops); outside ``torch.func`` transforms.
    """
    with fwAD.dual_level():
        duals = tuple(tree_map(fwAD.make_dual, p, t) for p, t in zip(primals, tangents, strict=True))
        out = tree_map(fwAD.unpack_dual, fn(*duals))
    primal = tree_map(lambda d: d.primal, out)
    tangent = tree_map(lambda d: torch.zeros_like(d.primal) if d.tangent is None else d.tangent, out)
    return primal, tangent


def update_jvp(update: Callable, w: dict, g: Params, lr: torch.Tensor, step: int,
               dw: dict | None = None, dg: Params | None = None, with_lr: bool = True
               ) -> tuple[dict, dict, dict]:
    """``(U, ∂U/∂w·ẇ + ∂U/∂g·ġ + ∂U/∂η, B = ∂U/∂η)`` for ``U = update(w, g, η, step)`` by
    forward-mode AD (``ẇ = ġ = None`` mean zero): the tangent of any elementwise update, and
    the reference for the hand-derived ones (:attr:`~hypergrad.dynamics.Dynamics.update_jvp`).
    ``with_lr=False``: the tangent without ``∂U/∂η``; tangents with a leading batch dimension
    are taken one direction at a time."""
    one = torch.ones_like(lr)
    w_next, B = jvp_eager(lambda lr_: update(w, g, lr_, step), (lr,), (one,))
    if dw is None and dg is None:
        return w_next, (B if with_lr else tree_zeros_like(B)), B
    dw = dw if dw is not None else tree_zeros_like(w)
    dg = dg if dg is not None else tree_zeros_like(g)
    batched = [x.dim() > y.dim() for x, y in zip(tree_leaves(dw), tree_leaves(w), strict=True)]
    if any(batched):
        n = next(x.shape[0] for x, b in zip(tree_leaves(dw), batched, strict=True) if b)
        pick = lambda t, i: tree_map(lambda x, y: x[i] if x.dim() > y.dim() else x, t[0], t[1])  # noqa: E731
        outs = [update_jvp(update, w, g, lr, step, pick((dw, w), i), pick((dg, g), i), with_lr)[1]
                for i in range(n)]
        return w_next, tree_map(lambda *xs: torch.stack(xs), *outs), B
    if not with_lr:
        _, tangent = jvp_eager(lambda w_, g_: update(w_, g_, lr, step), (w, g), (dw, dg))
        return w_next, tangent, B
    _, tangent = jvp_eager(lambda w_, g_, lr_: update(w_, g_, lr_, step), (w, g, lr), (dw, dg, one))
    return w_next, tangent, B
