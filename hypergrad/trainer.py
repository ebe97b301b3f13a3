"""A thin front end for ``torch.nn.Module`` users: train with MARTHE in an ordinary loop.

::

    trainer = hg.ModuleTrainer(model, optimizer="sgd", method="marthe", lr=0.1, beta=1e-6,
                               mu="auto", kappa=1e-3, momentum=0.9, weight_decay=5e-4)
    for (x, y), (xv, yv) in zip(train_loader, itertools.cycle(val_loader)):
        info = trainer.step((x, y), (xv, yv))     # Algorithm 1, one step
        log(step=info.t, lr=trainer.lr, loss=info.loss)

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

from hypergrad.dynamics import Batch, State, make_dynamics
from hypergrad.models import module_loss, module_objective
from hypergrad.online import (
    FixedSchedule,
    History,
    Marthe,
    OnlineState,
    StepInfo,
    check_blowup,
    make_tuner,
)

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

    def __init__(self, model: torch.nn.Module, tuner: Marthe | FixedSchedule | None = None, *,
                 criterion: Callable = F.cross_entropy, max_loss_ratio: float = math.inf,
                 **options):
        if tuner is None:
            method = options.pop("method", "marthe")
            tuner_kw = {k: options.pop(k) for k in _TUNER_OPTIONS if k in options}
            if method == "fixed":       # η comes from the schedule (lr accepted for old callers)
                tuner_kw.pop("lr", None)
            dyn = make_dynamics(options.pop("optimizer", "sgd"), module_loss(model, criterion),
                                **options)
            tuner = make_tuner(method, dyn, **tuner_kw)
        elif options or not hasattr(tuner, "step"):
            raise TypeError("pass either a tuner or the options that build one, not both")
        self.model, self.tuner, self.criterion = model, tuner, criterion
        self.max_loss_ratio = max_loss_ratio
        params = {n: p.detach().clone() for n, p in model.named_parameters()}
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
        self.state, self.lr = state, info.lr
        self.history.append(info)
        self._write_back()
        return info

    def _write_back(self) -> None:
        st = self.functional_state
        with torch.no_grad():
            for n, p in self.model.named_parameters():
                p.copy_(st.w["params"][n])
            if st.aux["buffers"]:
                for n, b in self.model.named_buffers():
                    b.copy_(st.aux["buffers"][n])

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything needed to resume bit-identically (``torch.save`` it)."""
        return {"online": Marthe.state_dict(self.state), "history": vars(self.history)}

    def load_state_dict(self, d: dict) -> None:
        if "fixed" in d:            # the format before FixedSchedule was a tuner
            st = State(**d["fixed"])
            self.state = self.tuner.init(st)._replace(t=st.aux["step"])
        else:
            self.state = Marthe.load_state_dict(d["online"])
        self.history = History(**{k: list(v) for k, v in d["history"].items()})
        self.lr = self.history.lr[-1] if self.history.lr else self.lr
        self._write_back()
