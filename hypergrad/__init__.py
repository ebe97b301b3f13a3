"""hypergrad: exact and online hypergradients of learning-rate schedules.

The reference library of the book "Scheduling the Learning Rate via Hypergradients"
(Donini et al., MARTHE). Inner dynamics are pure functions (:mod:`hypergrad.dynamics`);
the exact hypergradient of Eq. 2–4 (:mod:`hypergrad.hypergradient`); LRS-OPT
(:mod:`hypergrad.lrs_opt`); HD, RTHO and MARTHE as one algorithm (:mod:`hypergrad.online`);
baseline schedules (:mod:`hypergrad.schedules`); an ``nn.Module`` front end
(:mod:`hypergrad.trainer`); MARTHE as a ``torch.optim`` optimizer with one learning rate per
parameter group (:mod:`hypergrad.optim`).
"""

__version__ = "0.1.0"

from hypergrad import optim  # noqa: F401  (the submodule, as hg.optim)
from hypergrad.dynamics import DivergenceError, Dynamics, State, adam, make_dynamics, sgd
from hypergrad.hypergradient import hypergradient
from hypergrad.loop import History, run_online, select_hyper_lr
from hypergrad.lrs_opt import LrsOptResult, lrs_opt
from hypergrad.lrs_opt_population import lrs_opt_population
from hypergrad.online import HD, RTHO, FixedSchedule, Marthe, OnlineState, StepInfo, make_tuner
from hypergrad.runtime import pick_device, seed_everything
from hypergrad.trainer import ModuleTrainer

__all__ = [
    "Dynamics", "DivergenceError", "State", "adam", "sgd", "make_dynamics", "hypergradient",
    "Marthe", "HD", "RTHO", "FixedSchedule", "make_tuner", "OnlineState", "StepInfo", "History",
    "run_online", "select_hyper_lr", "lrs_opt", "lrs_opt_population", "LrsOptResult", "ModuleTrainer",
    "pick_device", "seed_everything",
]
