"""The one validation layer at the library's edge: what a user passes in (weights, learning
rates, schedules) is checked here, once, with an error that names the argument, the value or
the step; and a user's loss or objective that fails is reported with the step and a hint.

The algorithms below this layer assume valid inputs; nothing here runs per operation, and the
hints are computed only once an error has happened.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import Any

import torch

__all__ = ["check_params", "check_lr", "check_schedule", "reraise_user_error", "describe"]


def describe(x: Any) -> str:
    """A short description of a value for an error message (tensors by dtype, shape, device)."""
    if isinstance(x, torch.Tensor):
        return f"tensor(dtype={x.dtype}, shape={tuple(x.shape)}, device={x.device})"
    if isinstance(x, (tuple, list)):
        inner = ", ".join(describe(v) for v in x[:4])
        return f"{type(x).__name__}[{inner}{', …' if len(x) > 4 else ''}]"
    if isinstance(x, Mapping):
        return f"dict with keys {list(x)[:6]}"
    r = repr(x)
    return r if len(r) <= 60 else r[:57] + "..."


def check_params(params: Any, what: str = "params") -> dict[str, torch.Tensor]:
    """``params`` as a non-empty dict ``{name: tensor}`` of real floating tensors sharing one
    dtype and one (non-``meta``) device, or a ``ValueError``/``TypeError`` naming the problem."""
    if isinstance(params, torch.Tensor):
        raise TypeError(f"{what} must be a dict {{name: tensor}}, got a bare tensor "
                        f"({describe(params)}); wrap it, e.g. {{'w': tensor}}")
    if not isinstance(params, Mapping):
        hint = (" (e.g. dict(model.named_parameters()), not model.parameters())"
                if isinstance(params, (list, tuple)) or hasattr(params, "__next__") else "")
        raise TypeError(f"{what} must be a dict {{name: tensor}}, got {type(params).__name__}{hint}")
    if not params:
        raise ValueError(f"{what} must be a non-empty dict of tensors")
    first_name, first = None, None
    for name, p in params.items():
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"{what}[{name!r}] must be a tensor, got {type(p).__name__}")
        if not (p.is_floating_point() and not p.is_complex()):
            raise TypeError(f"{what}[{name!r}] must be a real floating-point tensor, got {p.dtype}")
        if p.device.type == "meta":
            raise ValueError(f"{what}[{name!r}] is on the 'meta' device (it has no values): "
                             f"materialise the weights first (e.g. module.to_empty(device=...) "
                             f"and initialise them)")
        if first is None:
            first_name, first = name, p
        elif p.dtype != first.dtype or p.device != first.device:
            raise ValueError(f"{what} mixes dtypes or devices: {first_name!r} is {first.dtype} on "
                             f"{first.device} but {name!r} is {p.dtype} on {p.device}; "
                             f"convert them to one (e.g. model.to(dtype, device))")
    return dict(params)


def _reject_non_real(value: Any, what: str) -> None:
    if isinstance(value, (str, bytes)) or isinstance(value, bool):
        raise TypeError(f"{what} must be a real number, got {value!r}")
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise TypeError(f"{what} must be real, got a complex tensor ({value.dtype})")
        if value.dtype == torch.bool:
            raise TypeError(f"{what} must be a real number, got a bool tensor")
        if value.device.type == "meta":
            raise ValueError(f"{what} is on the 'meta' device (it has no values)")
    elif isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be real, got the complex number {value!r}")
    elif not isinstance(value, numbers.Real) and not hasattr(value, "__float__"):
        raise TypeError(f"{what} must be a real number, got {type(value).__name__} {describe(value)}")


def check_lr(lr: Any, what: str = "the learning rate") -> None:
    """Reject a learning rate that is not a real number (a string, a complex, a bool) before it
    reaches ``torch.as_tensor`` (which would drop an imaginary part or fail obscurely)."""
    _reject_non_real(lr, what)


def check_schedule(lrs: Any, like: torch.Tensor | None = None, length: int | None = None,
                   groups: int | None = None) -> torch.Tensor:
    """Validate a schedule ``η ∈ R^T_{≥0}``: real, 1-D, finite, non-negative, of the right length
    (a ``ValueError``/``TypeError`` naming the step or the problem). With ``groups = G`` the
    schedule is ``T × G``: one learning rate per step and group of weights."""
    shape = "a 1-D tensor" if groups is None else f"a T x {groups} tensor"
    if isinstance(lrs, (str, bytes)):
        raise TypeError(f"the schedule must be {shape} or sequence of numbers, got {lrs!r}")
    if isinstance(lrs, torch.Tensor):
        _reject_non_real(lrs, "the schedule")
    else:
        try:
            lrs = list(lrs) if not isinstance(lrs, numbers.Number) else lrs
        except TypeError:
            raise TypeError(f"the schedule must be {shape} or sequence of numbers, got "
                            f"{type(lrs).__name__}") from None
        for t, v in enumerate(lrs if isinstance(lrs, list) else [lrs]):
            if not isinstance(v, (list, tuple)) and (not isinstance(v, torch.Tensor) or v.ndim == 0):
                _reject_non_real(v, f"the schedule's learning rate at step {t}")
        # numbers are read straight in the weights' dtype (a float32 detour would round them)
        dtype = like.dtype if like is not None else None
        try:
            lrs = (torch.stack([torch.as_tensor(v, dtype=dtype) for v in lrs])
                   if isinstance(lrs, list) and lrs and isinstance(lrs[0], torch.Tensor)
                   else torch.as_tensor(lrs, dtype=dtype))
        except (TypeError, ValueError, RuntimeError) as e:
            raise ValueError(f"the schedule could not be read as {shape}: {e}") from None
        _reject_non_real(lrs, "the schedule")
    if like is not None:
        lrs = lrs.to(dtype=like.dtype, device=like.device)
    elif not lrs.is_floating_point():
        lrs = lrs.to(torch.get_default_dtype())
    if groups is None and lrs.ndim != 1:
        raise ValueError(f"the schedule must be a 1-D tensor of T learning rates, got shape "
                         f"{tuple(lrs.shape)}")
    if groups is not None and (lrs.ndim != 2 or lrs.shape[1] != groups):
        raise ValueError(f"the schedule must be a T x {groups} tensor (one learning rate per "
                         f"step and group), got shape {tuple(lrs.shape)}")

    def where(mask):
        bad = [int(i) for i in mask.nonzero()[0]]
        return (f"step {bad[0]}" + ("" if groups is None else f", group {bad[1]}"),
                lrs[tuple(bad)].item())

    if not torch.isfinite(lrs).all():
        at, v = where(~torch.isfinite(lrs))
        raise ValueError(f"the schedule has a non-finite learning rate at {at}: {v}")
    if (lrs < 0).any():
        at, v = where(lrs < 0)
        raise ValueError(f"learning rates must be >= 0; {at} has {v}")
    if length is not None and lrs.shape[0] != length:
        raise ValueError(f"the schedule has {lrs.shape[0]} learning rates but there are "
                         f"{length} minibatches: one learning rate per step is needed")
    return lrs


#: exceptions from a user's function that are re-raised with context (same type); others
#: (DivergenceError, KeyboardInterrupt, out-of-memory, ...) pass through untouched.
_WRAPPED = (RuntimeError, ValueError, TypeError, IndexError, KeyError)


def _batch_hint(batch: Any, like: torch.Tensor | None) -> str:
    if like is None:
        return ""
    leaves = batch if isinstance(batch, (tuple, list)) else [batch]
    for x in leaves:
        if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != like.dtype:
            return (f"; the batch holds {x.dtype} data but the weights are {like.dtype}: "
                    f"convert one to the other (e.g. x.to({like.dtype}))")
        if isinstance(x, torch.Tensor) and x.device != like.device:
            return (f"; the batch is on {x.device} but the weights are on {like.device}: "
                    f"move it (x.to({str(like.device)!r}))")
    if isinstance(batch, torch.Tensor) or (isinstance(batch, (tuple, list)) and len(batch) < 2):
        return "; a batch is usually a pair (inputs, labels)"
    return ""


def reraise_user_error(e: BaseException, what: str, batch: Any = None,
                       like: torch.Tensor | None = None) -> None:
    """Re-raise ``e`` (raised by a user's loss or objective) with ``what`` (e.g. "the training
    loss at step 3") and a hint about the batch (dtype, device, missing labels)."""
    if type(e) not in _WRAPPED or getattr(e, "_hypergrad_context", False):
        raise e
    described = f" on its batch {describe(batch)}" if batch is not None else ""
    err = type(e)(f"{what} failed{described}: {e}{_batch_hint(batch, like)}")
    err._hypergrad_context = True
    raise err from e


def call_checked(fn: Callable, what: str, batch: Any, like: torch.Tensor | None, *args):
    """``fn(*args)``, with any error re-raised by :func:`reraise_user_error`."""
    try:
        return fn(*args)
    except _WRAPPED as e:
        reraise_user_error(e, what, batch, like)
