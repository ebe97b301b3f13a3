"""A thin front end for ``torch.nn.Module`` users: train with MARTHE in an ordinary loop.

::

    trainer = hg.ModuleTrainer(model, optimizer="sgd", method="marthe", lr=0.1, beta=1e-6,
                               mu="auto", kappa=1e-3, momentum=0.9, weight_decay=5e-4)
    for (x, y), (xv, yv) in zip(train_loader, itertools.cycle(val_loader)):
        info = trainer.step((x, y), (xv, yv))     # Algorithm 1, one step
        log(step=info.t, lr=trainer.lr, loss=info.loss)

Only the parameters with ``requires_grad=True`` are trained (the trainable set is fixed when
the trainer is built): frozen ones are left untouched, as ``torch.optim`` leaves them, and a
model with no trainable parameter is an error. The training loss ``L`` respects the module's
mode at each step, as ``loss = criterion(model(x), y)`` would: in ``train()`` mode BatchNorm
uses batch statistics and moves its running ones; after ``model.eval()`` it uses the running
statistics and leaves them unchanged (switch with ``model.train()``/``model.eval()`` between
steps, as in an ordinary loop). That is the loss the trainer builds; a tuner of your own gets
the same with ``module_loss(model, criterion, train=None)``. A parameter that the loss does not use (an unused submodule)
gets a zero gradient: without weight decay it stays unchanged, as with ``torch.optim``; with
coupled weight decay the functional dynamics decays it (``∇L + λθ`` with ``∇L = 0``), where
``torch.optim`` skips a parameter whose ``.grad`` is ``None`` (for Adam, whose step count is
per parameter there and one for all here, the bias corrections then differ once such a
parameter starts being used).

Each step runs one iteration of Algorithm 1 (or of a fixed schedule, ``method="fixed"``) on
the functional state, then copies the new parameters and BatchNorm buffers back into
``model`` in place, so the module can be evaluated, saved or inspected as usual. ``L`` is the
training criterion plus coupled weight decay (in the optimizer, as in ``torch.optim``); ``E``
is the unregularised criterion on the validation batch, with BatchNorm in eval mode using the
current running statistics. For Baydin et al.'s HD on the training loss, pass the step's own
training batch as ``val_batch`` too: at step ``t`` the objective is then ``L_t`` at ``w_t``,
and ``Δ_t = −∇L_t(w_t)ᵀ∇L_{t-1}(w_{t-1})`` is their rule (with BatchNorm, ``E`` runs in eval
mode, theirs in train mode).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from hypergrad import _checks, online
from hypergrad.dynamics import Batch, State, make_dynamics
from hypergrad.loop import History, check_blowup
from hypergrad.models import module_loss, module_objective
from hypergrad.online import FixedSchedule, Marthe, OnlineState, StepInfo, make_tuner

__all__ = ["ModuleTrainer"]

#: the options that go to the tuner (the rest go to the optimizer)
_TUNER_OPTIONS = ("lr", "beta", "mu", "kappa", "schedule")


class ModuleTrainer:
    """Train ``model`` with a tuner: any object with ``init``/``step`` (:class:`~hypergrad.online.Marthe`,
    :class:`~hypergrad.online.HD`, :class:`~hypergrad.online.RTHO`,
    :class:`~hypergrad.online.FixedSchedule`) whose dynamics' loss is the model's
    (:func:`~hypergrad.models.module_loss`).

    Args:
        model: any ``nn.Module`` (BatchNorm included); its parameters are updated in place.
        tuner: the tuner; ``None`` builds one from ``options`` (below).
        criterion: ``criterion(outputs, targets)``, cross-entropy by default (``E``, and
            ``L`` when the trainer builds the dynamics).
        max_loss_ratio: raise :class:`~hypergrad.dynamics.DivergenceError` when the training
            loss exceeds this multiple of the first one (a blow-up; off by default).
        options: without a tuner, ``optimizer="sgd"`` (``momentum``, ``weight_decay``,
            ``nesterov``) or ``"adam"`` (``betas``, ``eps``, ``weight_decay``) for
            :func:`~hypergrad.dynamics.make_dynamics`, and ``method="marthe"``, ``"hd"``,
            ``"rtho"`` or ``"fixed"`` with ``lr``, ``beta``, ``mu``, ``kappa`` or ``schedule``
            for :func:`~hypergrad.online.make_tuner`.

    On a :class:`~hypergrad.dynamics.DivergenceError` the trainer keeps the last state it
    completed (the module holds it); nothing of the failed step is written back.
    """

    def __init__(self, model: torch.nn.Module,
                 tuner: online.Marthe | online.FixedSchedule | None = None, *,
                 criterion: Callable = F.cross_entropy, max_loss_ratio: float = math.inf,
                 **options):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if tuner is None:
            method = options.pop("method", "marthe")
            tuner_kw = {k: options.pop(k) for k in _TUNER_OPTIONS if k in options}
            if method == "fixed":       # η comes from the schedule (lr accepted for old callers)
                tuner_kw.pop("lr", None)
            dyn = make_dynamics(options.pop("optimizer", "sgd"),
                                module_loss(model, criterion, train=None), **options)
            tuner = make_tuner(method, dyn, **tuner_kw)
        elif options or not hasattr(tuner, "step"):
            raise TypeError("pass either a tuner or the options that build one, not both")
        try:
            ratio_ok = float(max_loss_ratio) > 0
        except (TypeError, ValueError):
            ratio_ok = False
        if not ratio_ok:
            raise ValueError(f"max_loss_ratio must be a number > 0 (math.inf for no limit), "
                             f"got {max_loss_ratio!r}")
        self.model, self.tuner, self.criterion = model, tuner, criterion
        self.max_loss_ratio = max_loss_ratio
        params = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        if not params:
            raise ValueError(f"the model has no trainable parameters (all "
                             f"{sum(1 for _ in model.parameters())} have requires_grad=False)")
        _checks.check_params(params, "the model's trainable parameters")
        buffers = {n: b.detach().clone() for n, b in model.named_buffers()} or None
        self.state: OnlineState = tuner.init(params, buffers)
        self.history = History.empty()
        self.lr = float(self.state.lr)

    @property
    def dyn(self):
        return self.tuner.dyn

    @property
    def functional_state(self) -> State:
        """The dynamics state ``w_t`` (weights, optimizer slots, buffers)."""
        return self.state.state

    # ------------------------------------------------------------------ the loop
    def step(self, train_batch: Batch, val_batch: Batch | None = None) -> StepInfo:
        """One step; ``val_batch`` is needed by the online methods (``E`` on it)."""
        objective = None
        if not isinstance(self.tuner, FixedSchedule):
            if val_batch is None:
                raise ValueError("an online method needs a validation batch each step")
            objective = module_objective(self.model, val_batch, self.criterion)
        state, info = self.tuner.step(self.state, train_batch, objective)
        first = self.history.loss[0] if self.history.loss else info.loss
        check_blowup(info.t, info.loss, first, self.max_loss_ratio)
        self.state = state
        self.history.append(info)
        self.lr = self.history.lr[-1]             # a float (the history holds floats)
        self._write_back()
        return info

    def _write_back(self) -> None:
        """Copy ``θ(w_t)`` and the buffers into the module (the trained parameters only)."""
        st = self.functional_state
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for n, v in st.w["params"].items():
                params[n].copy_(v)
            if st.aux["buffers"]:
                for n, b in self.model.named_buffers():
                    b.copy_(st.aux["buffers"][n])

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything needed to resume bit-identically (``torch.save`` it), with what the state
        was made with (tuner, dynamics, parameter and buffer shapes) for :meth:`load_state_dict`."""
        return {"online": Marthe.state_dict(self.state), "history": vars(self.history),
                "meta": self._meta()}

    def _meta(self) -> dict:
        st = self.functional_state
        t = self.tuner
        tuner = type(t).__name__ + (f"(mu={t.mu!r}, kappa={t.kappa!r})" if hasattr(t, "kappa") else "")
        return {"tuner": tuner, "dynamics": repr(self.dyn),
                "params": {n: tuple(v.shape) for n, v in st.w["params"].items()},
                "buffers": {n: tuple(v.shape) for n, v in (st.aux["buffers"] or {}).items()}}

    def load_state_dict(self, d: dict) -> None:
        """Restore a :meth:`state_dict`: checked against this trainer first (tuner, dynamics,
        hyperparameters, parameter names, shapes and dtypes, optimizer slots, buffers) — a
        mismatch is a ``ValueError`` naming it, and the trainer is left unchanged — then
        applied at once: the weights and buffers are written into the module, and ``lr``,
        the step count and the history are restored."""
        if not isinstance(d, dict) or "history" not in d or not ("online" in d or "fixed" in d):
            raise ValueError("not a ModuleTrainer state dict (expected the keys 'online' or "
                             "'fixed', and 'history')")
        meta = d.get("meta")
        if meta is not None:
            mine = self._meta()
            for key in ("tuner", "dynamics"):
                if meta.get(key) != mine[key]:
                    raise ValueError(f"the checkpoint was made with {key} {meta.get(key)!r}, "
                                     f"this trainer has {mine[key]!r}")
        if "fixed" in d:            # the format before FixedSchedule was a tuner
            st = State(**d["fixed"])
            state = self.tuner.init(st)._replace(t=st.aux["step"])
        else:
            state = Marthe.load_state_dict(d["online"])
        _check_same_layout(state, self.state)
        try:
            history = History(**{k: list(v) for k, v in d["history"].items()})
        except TypeError as e:
            raise ValueError(f"the checkpoint's history is malformed: {e}") from None
        if len({len(v) for v in vars(history).values()}) > 1:
            raise ValueError("the checkpoint's history has lists of different lengths")
        if "fixed" in d and history.lr:     # the old format kept η_{t-1} only in the history
            state = state._replace(lr=history.lr[-1])
        self.state, self.history = state, history
        self.lr = float(state.lr)
        self._write_back()


def _layout(tree, prefix: str = "") -> dict:
    """``{path: (shape, dtype)}`` of a tree of tensors (``None`` leaves kept as ``None``)."""
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_layout(v, f"{prefix}{k}/"))
        return out
    if isinstance(tree, torch.Tensor):
        return {prefix.rstrip("/"): (tuple(tree.shape), tree.dtype)}
    return {prefix.rstrip("/"): None if tree is None else type(tree).__name__}


def _check_same_layout(new, cur) -> None:
    """A loaded :class:`OnlineState` must have the current one's structure: the same optimizer
    slots, parameter names, shapes and dtypes, buffers and tangent (``Z``)."""
    for what, a, b in (("state", new.state.w, cur.state.w),
                       ("buffers", new.state.aux["buffers"], cur.state.aux["buffers"]),
                       ("tangent Z", new.Z, cur.Z)):
        la, lb = _layout(a), _layout(b)
        if la == lb:
            continue
        missing, extra = sorted(set(lb) - set(la)), sorted(set(la) - set(lb))
        if missing or extra:
            raise ValueError(f"the checkpoint's {what} does not match this trainer's: "
                             f"missing {missing[:5]}, unexpected {extra[:5]} (another optimizer "
                             f"or another model?)")
        k = next(k for k in lb if la[k] != lb[k])
        raise ValueError(f"the checkpoint's {what} entry {k!r} is {la[k]}, this trainer's is "
                         f"{lb[k]} (another model?)")
