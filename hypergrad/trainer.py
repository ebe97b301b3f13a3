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

from hypergrad.dynamics import Batch, DivergenceError, Dynamics, State, adam, sgd
from hypergrad.models import module_loss, module_objective
from hypergrad.online import HD, RTHO, History, Marthe, OnlineState, StepInfo

__all__ = ["ModuleTrainer"]

METHODS = ("marthe", "hd", "rtho", "fixed")


class ModuleTrainer:
    """Train ``model`` with an online (or fixed) learning-rate schedule.

    Args:
        model: any ``nn.Module`` (BatchNorm included); its parameters are updated in place.
        optimizer: ``"sgd"`` (``momentum``, ``weight_decay``, ``nesterov``) or ``"adam"``
            (``betas``, ``eps``, ``weight_decay``).
        method: ``"marthe"``, ``"hd"`` (``μ = 0``), ``"rtho"`` (``μ = 1``) or ``"fixed"``.
        lr, beta, mu, kappa: as :class:`~hypergrad.online.Marthe` (``mu`` only for ``"marthe"``).
        schedule: for ``method="fixed"``, a callable ``t -> η_t`` or a 1-D tensor.
        criterion: ``criterion(outputs, targets)``, cross-entropy by default.
        max_loss_ratio: raise :class:`~hypergrad.dynamics.DivergenceError` when the training
            loss exceeds this multiple of the first one (a blow-up; off by default).
        tuner_options: passed to :class:`~hypergrad.online.Marthe` (``tangent``, ``hvp``,
            ``estimator``).

    On a :class:`~hypergrad.dynamics.DivergenceError` the trainer keeps the last state it
    completed (the module holds it); nothing of the failed step is written back.
    """

    def __init__(self, model: torch.nn.Module, optimizer: str = "sgd", method: str = "marthe",
                 lr: float = 0.01, beta: float = 1e-4, mu: float | str = "auto",
                 kappa: float | None = None, schedule: Callable[[int], float] | None = None, *,
                 momentum: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 criterion: Callable = F.cross_entropy, max_loss_ratio: float = math.inf,
                 **tuner_options):
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if method == "fixed" and schedule is None:
            raise ValueError("method='fixed' needs a schedule (a callable t -> lr or a tensor)")
        self.model, self.method, self.criterion = model, method, criterion
        self.max_loss_ratio = max_loss_ratio
        self._buffer_names = [n for n, _ in model.named_buffers()]
        self.dyn = self._dynamics(optimizer, momentum, weight_decay, nesterov, betas, eps)
        params = {n: p.detach().clone() for n, p in model.named_parameters()}
        buffers = ({n: b.detach().clone() for n, b in model.named_buffers()}
                   if self._buffer_names else None)
        if method == "fixed":
            self.schedule = schedule
            self.tuner = None
            self.state: State | OnlineState = self.dyn.init(params, buffers)
        else:
            kw = tuner_options
            self.tuner = {"marthe": lambda: Marthe(self.dyn, lr, beta, mu, kappa, **kw),
                          "hd": lambda: HD(self.dyn, lr, beta, kappa, **kw),
                          "rtho": lambda: RTHO(self.dyn, lr, beta, kappa, **kw)}[method]()
            self.state = self.tuner.init(params, buffers)
        self.history = History.empty()
        self.lr = float(lr) if method != "fixed" else self._fixed_lr(0)

    # ------------------------------------------------------------------ pieces
    def _dynamics(self, optimizer, momentum, weight_decay, nesterov, betas, eps) -> Dynamics:
        loss = module_loss(self.model, self.criterion)
        if optimizer == "sgd":
            return sgd(loss, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
        if optimizer == "adam":
            return adam(loss, betas=betas, eps=eps, weight_decay=weight_decay)
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")

    def _objective(self, batch) -> Callable:
        """``E``: the criterion on ``batch`` in eval mode, with the state's running statistics."""
        return module_objective(self.model, batch, self.criterion)

    def _fixed_lr(self, t: int) -> float:
        s = self.schedule
        lr = float(s(t)) if callable(s) else float(s[t])
        if not (lr >= 0 and math.isfinite(lr)):
            raise ValueError(f"the schedule gives an invalid learning rate at step {t}: {lr}")
        return lr

    @property
    def functional_state(self) -> State:
        """The dynamics state ``w_t`` (weights, optimizer slots, buffers)."""
        return self.state.state if isinstance(self.state, OnlineState) else self.state

    # ------------------------------------------------------------------ the loop
    def step(self, train_batch: Batch, val_batch: Batch | None = None) -> StepInfo:
        """One step; ``val_batch`` is needed by the online methods (``E`` on it)."""
        if self.tuner is None:
            t = self.state.aux["step"]
            self.lr = self._fixed_lr(t)
            state, loss = self.dyn.step_with_loss(self.state, self.lr, train_batch)
            if not math.isfinite(float(loss)):
                raise DivergenceError(t, "the training loss")
            info = StepInfo(t, self.lr, float("nan"), 0.0, float("nan"), float(loss), float("nan"))
        else:
            if val_batch is None:
                raise ValueError(f"method={self.method!r} needs a validation batch each step")
            state, info = self.tuner.step(self.state, train_batch, self._objective(val_batch))
        first = self.history.loss[0] if self.history.loss else info.loss
        if info.loss > self.max_loss_ratio * max(first, 1e-12):
            raise DivergenceError(info.t, f"the training loss blew up ({info.loss:.3g} > "
                                          f"{self.max_loss_ratio} × {first:.3g})", blowup=True)
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
        if self.tuner is None:
            return {"fixed": self.state._asdict(), "history": vars(self.history)}
        return {"online": Marthe.state_dict(self.state), "history": vars(self.history)}

    def load_state_dict(self, d: dict) -> None:
        self.state = (State(**d["fixed"]) if self.tuner is None
                      else Marthe.load_state_dict(d["online"]))
        self.history = History(**{k: list(v) for k, v in d["history"].items()})
        self.lr = self.history.lr[-1] if self.history.lr else self.lr
        self._write_back()
