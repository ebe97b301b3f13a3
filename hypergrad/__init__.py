"""hypergrad: exact and online hypergradients of learning-rate schedules.

The reference library of the book "Scheduling the Learning Rate via Hypergradients"
(Donini et al., MARTHE). Inner dynamics are pure functions (:mod:`hypergrad.dynamics`);
the exact hypergradient of Eq. 2–4 (:mod:`hypergrad.hypergradient`); LRS-OPT
(:mod:`hypergrad.schedules`); HD, RTHO and MARTHE as one algorithm (:mod:`hypergrad.online`).
"""

__version__ = "0.1.0"

from hypergrad.dynamics import DivergenceError, Dynamics, State, adam, sgd
from hypergrad.hypergradient import hypergradient
from hypergrad.online import (
    HD,
    RTHO,
    History,
    Marthe,
    OnlineState,
    StepInfo,
    run_online,
    select_hyper_lr,
)
from hypergrad.runtime import chapter_setup, pick_device
from hypergrad.schedules import LrsOptResult, lrs_opt
from hypergrad.trainer import ModuleTrainer

__all__ = [
    "Dynamics", "DivergenceError", "State", "adam", "sgd", "hypergradient",
    "Marthe", "HD", "RTHO", "OnlineState", "StepInfo", "History", "run_online", "select_hyper_lr",
    "lrs_opt", "LrsOptResult", "ModuleTrainer", "chapter_setup", "pick_device",
]
