"""Hypergradient learning rates against the learning-rate-free optimizers practitioners use,
on Section 5's MNIST task.

The hypergradient methods (HD, RTHO, MARTHE with μ = 0.9 and with adaptive μ) run through the
project's drop-in optimizers (:mod:`hypergrad.optim`), ``E`` the loss on a validation
minibatch drawn at every step. The learning-rate-free optimizers are the real packages, at
their authors' defaults: Prodigy (``prodigyopt``), Schedule-Free SGD and AdamW
(``schedulefree``, switched with ``optimizer.eval()`` before evaluation), D-Adaptation
(``dadaptation.DAdaptSGD``) and DoG (``dog``, evaluated on its polynomial-decay weight
average). Two tuned baselines complete them: a fixed η and a cosine schedule.

Every method starts from the same weights and sees the same minibatches on a seed. The tuned
methods (η of the fixed and cosine baselines, β of the hypergradient ones) get grids of the
same size; each value is chosen on the selection seeds by mean validation accuracy, and every
method is reported on the other seeds. The learning-rate-free methods are not tuned. Each run
records the effective step size of every step, read from the optimizer (``param_groups`` and
its state), and the wall time of a step. Each run is one unit (resumable, committed like
Part II's).
"""

from __future__ import annotations

import math
import os
import time

import torch
import torch.nn.functional as F

from hypergrad.dynamics import DivergenceError
from hypergrad.experiments.mnist_schedules import MnistTask
from hypergrad.experiments.per_layer import _module
from hypergrad.experiments.stats import paired
from hypergrad.experiments.store import UnitStore, _seed_key, float32_trace

__all__ = ["one_step", "TUNED", "LR_FREE", "METHODS", "HYPER", "PACKAGES", "uses_validation",
           "make_optimizer", "train_run", "run_lr_free", "package_errors"]

#: the tuned methods, the baselines (η) and the hypergradient methods (β)
TUNED = ("fixed", "cosine", "hd", "rtho", "marthe-mu0.9", "marthe-auto-mu")
#: the learning-rate-free optimizers, run at their authors' defaults
LR_FREE = ("prodigy", "sf-sgd", "sf-adamw", "dadapt-sgd", "dog")
METHODS = TUNED + LR_FREE
#: the methods that read the validation set while training
HYPER = ("hd", "rtho", "marthe-mu0.9", "marthe-auto-mu")
#: the package (and its import name) behind each learning-rate-free method
PACKAGES = {"prodigy": ("prodigyopt", "prodigyopt"), "sf-sgd": ("schedulefree", "schedulefree"),
            "sf-adamw": ("schedulefree", "schedulefree"),
            "dadapt-sgd": ("dadaptation", "dadaptation"), "dog": ("dog-optimizer", "dog")}

_VAL_SALT = 7   # the validation minibatches of a seed: another stream than the training ones


def uses_validation(method: str) -> bool:
    """Whether ``method`` reads the validation set while it trains."""
    return method in HYPER


def package_errors() -> dict[str, str | None]:
    """For each learning-rate-free method, ``None`` if its package imports, else the error."""
    import importlib

    out = {}
    for m, (_, module) in PACKAGES.items():
        try:
            importlib.import_module(module)
            out[m] = None
        except Exception as e:  # noqa: BLE001  (any failure is reported, not hidden)
            out[m] = f"{type(e).__name__}: {e}"
    return out


def make_optimizer(method: str, net: torch.nn.Module, value: float | None, s: dict,
                   val_closure=None) -> torch.optim.Optimizer:
    """The optimizer of ``method`` over ``net``'s parameters: ``value`` is η (``"fixed"``,
    ``"cosine"``) or β (the hypergradient methods); the learning-rate-free ones take the
    keyword arguments of ``s["defaults"][method]`` (their authors' defaults)."""
    from hypergrad import optim

    params = net.parameters()
    kw = dict(s["defaults"].get(method, {}))
    if method in ("fixed", "cosine"):
        return torch.optim.SGD(params, lr=value)
    if method in HYPER:
        cls = {"hd": optim.HD, "rtho": optim.RTHO}.get(method, optim.Marthe)
        mu = {"marthe-mu0.9": 0.9, "marthe-auto-mu": "auto"}.get(method)
        extra = {} if mu is None else {"mu": mu}
        return cls(params, "sgd", lr=s["lr0"], beta=value, val_closure=val_closure, **extra)
    if method == "prodigy":
        from prodigyopt import Prodigy
        return Prodigy(params, **kw)
    if method == "sf-sgd":
        from schedulefree import SGDScheduleFree
        return SGDScheduleFree(params, **kw)
    if method == "sf-adamw":
        from schedulefree import AdamWScheduleFree
        return AdamWScheduleFree(params, **kw)
    if method == "dadapt-sgd":
        from dadaptation import DAdaptSGD
        return DAdaptSGD(params, **kw)
    if method == "dog":
        from dog import DoG
        return DoG(params, **{k: v for k, v in kw.items() if k != "averager_gamma"})
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _effective(method: str, group: dict, before: dict) -> float:
    """The step size the last step used, read from the optimizer's group (``before``: the
    group's entries read before the step)."""
    if method == "prodigy":          # dlr = d · lr (no bias correction by default)
        return float(before["d"]) * float(group["lr"])
    if method == "dadapt-sgd":       # dlr = d · lr / ‖g_0‖
        return float(before["d"]) * float(group["lr"]) / float(group["g0_norm"])
    if method in ("sf-sgd", "sf-adamw"):
        return float(group["scheduled_lr"])
    if method == "dog":
        return float(group["eta"][0])
    if method in ("fixed", "cosine"):
        return float(before["lr"])
    return float(group["lr"])        # η_t of the hypergradient methods


def one_step(method: str, opt: torch.optim.Optimizer, net: torch.nn.Module, x: torch.Tensor,
             y: torch.Tensor, t: int = 0, sched=None, averager=None) -> torch.Tensor:
    """One training step of ``method`` on the minibatch ``(x, y)`` (the hypergradient methods
    call their ``val_closure`` themselves); the training loss, detached. Raises
    :class:`~hypergrad.dynamics.DivergenceError` naming ``t`` on a non-finite loss."""
    if method in HYPER:
        return opt.step(lambda: F.cross_entropy(net(x), y))
    opt.zero_grad()
    loss = F.cross_entropy(net(x), y)
    if not math.isfinite(loss.item()):
        raise DivergenceError(t, "the training loss")
    loss.backward()
    opt.step()
    if sched is not None:
        sched.step()
    if averager is not None:
        averager.step()
    return loss.detach()


def train_run(task: MnistTask, method: str, value: float | None, seed: int,
              trace: dict | None = None) -> dict:
    """One run of ``method`` on ``seed``: final validation loss and accuracy, test accuracy,
    the first training loss, the effective step size of every step (float32), the seconds a
    step took, and whether (and when) it diverged (a non-finite number, or a training loss
    above ``max_loss_ratio`` times the first). ``trace`` (a dict), if given, receives the
    optimizer (``trace["optimizer"]``)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    s = task.s
    net = _module(task, seed)
    from hypergrad.data import sample_batches

    batches = task.batches(seed)
    val = sample_batches(task.data["val"], s["val_batch_size"], s["T"],
                         seed=_seed_key(seed, _VAL_SALT))
    vb = {"i": 0}

    def val_closure():
        xv, yv = val[vb["i"]]
        return F.cross_entropy(net(xv), yv)

    opt = make_optimizer(method, net, value, s, val_closure)
    if trace is not None:
        trace["optimizer"] = opt
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=s["T"])
             if method == "cosine" else None)
    averager = None
    if method == "dog":
        from dog import PolynomialDecayAverager
        averager = PolynomialDecayAverager(net, gamma=s["defaults"]["dog"]["averager_gamma"])
    if method in ("sf-sgd", "sf-adamw"):
        opt.train()
    lrs: list[float] = []
    first, diverged_at = None, None
    start = time.perf_counter()
    for t, (x, y) in enumerate(batches):
        group = opt.param_groups[0]
        before = {k: group[k] for k in ("d", "lr") if k in group}
        try:
            vb["i"] = t
            loss = one_step(method, opt, net, x, y, t, sched, averager)
        except DivergenceError as e:
            diverged_at = e.step
            break
        lrs.append(_effective(method, group, before))
        first = float(loss) if first is None else first
        if not math.isfinite(lrs[-1]) or float(loss) > s["max_loss_ratio"] * first:
            diverged_at = t
            break
    wall = time.perf_counter() - start
    if method in ("sf-sgd", "sf-adamw"):
        opt.eval()                     # the averaged point x, where Schedule-Free evaluates
    final = averager.averaged_model if averager is not None else net
    out = {"diverged": diverged_at is not None, "diverged_at": diverged_at,
           "first_loss": first, "lr": float32_trace(lrs),
           "seconds_per_step": wall / max(1, len(lrs))}
    if diverged_at is None:
        ev = task.evaluate({n: p.detach() for n, p in final.named_parameters()})
        if math.isfinite(ev["val_loss"]):
            return {**out, **ev}
        out.update(diverged=True, diverged_at=len(lrs))
    return {**out, "val_loss": None, "val_acc": None, "test_acc": None}


def _unit_settings(s: dict, method: str, value: float | None, seed: int) -> dict:
    task = {k: s[k] for k in ("n_train", "n_val", "data_seed", "sizes", "batch_size", "T",
                              "max_loss_ratio", "val_batch_size")}
    extra = ({"lr0": s["lr0"]} if method in HYPER else
             {"defaults": s["defaults"][method]} if method in LR_FREE else {})
    return {**task, **extra, "method": method, "value": value, "seed": seed}


def _key(value: float | None) -> str:
    return "default" if value is None else f"{value:g}"


def run_lr_free(s: dict, out_dir: str | os.PathLike | None = None, device="cpu",
                progress: bool = True, readonly: bool = False) -> dict:
    """Select each tuned method's value on ``s["select_seeds"]``, then run every method on
    ``s["seeds"]`` (the learning-rate-free ones at their defaults only).

    Returns the settings, every run (``runs[method][value][seed]``, value ``"default"`` for
    the untuned), the chosen value per tuned method with its selection scores, the reported
    runs (``report``), per method the accuracy over the reported seeds (``summary``:
    :func:`~hypergrad.experiments.stats.paired` of the accuracies, a diverged run counting as
    0, with the number of divergences and the cost of a step as a ratio to plain SGD's
    (``"fixed"``) in the same run), the paired comparisons of every method against the fixed
    η, and ``errors``: the import error of each package that failed (its method then has
    no runs).

    ``readonly=True`` only reads the units in ``out_dir`` and raises
    :class:`~hypergrad.experiments.store.MissingUnit` for the first one it lacks."""
    task = MnistTask(s, device)
    store = UnitStore(out_dir, readonly=readonly)
    errors = {m: e for m, e in package_errors().items() if e is not None}
    methods = [m for m in METHODS if m not in errors]
    runs: dict[str, dict] = {m: {} for m in methods}

    def get(method, value, seed):
        name = f"lr_free_{method}_{_key(value)}_seed{seed}"
        res = store.get(name, _unit_settings(s, method, value, seed),
                        lambda: train_run(task, method, value, seed))
        runs[method].setdefault(_key(value), {})[seed] = res
        return res

    def acc(r, key="val_acc"):
        return 0.0 if r[key] is None else r[key]

    chosen, scores = {}, {}
    for method in TUNED:
        grid = s["grids"][method]
        scores[method] = {_key(v): sum(acc(get(method, v, sd)) for sd in s["select_seeds"])
                          / len(s["select_seeds"]) for v in grid}
        chosen[method] = max(grid, key=lambda v, m=method: scores[m][_key(v)])
    report = {m: [get(m, chosen.get(m), sd) for sd in s["seeds"]] for m in methods}

    def mean_step(m):
        return sum(r["seconds_per_step"] for r in report[m]) / len(report[m])

    summary = {m: {"val_acc": paired([acc(r) for r in report[m]]),
                   "test_acc": paired([acc(r, "test_acc") for r in report[m]]),
                   "diverged": sum(r["diverged"] for r in report[m]),
                   "cost": mean_step(m) / mean_step("fixed"),
                   "uses_validation": uses_validation(m)} for m in methods}
    comparisons = {f"{m} - fixed": {key: paired([acc(ra, key) - acc(rb, key) for ra, rb in
                                                 zip(report[m], report["fixed"], strict=True)])
                                    for key in ("val_acc", "test_acc")}
                   for m in methods if m != "fixed"}
    diverged = {m: [sd for sd, r in zip(s["seeds"], report[m], strict=True) if r["diverged"]]
                for m in methods}
    return {"settings": s, "runs": runs, "chosen": chosen, "selection_scores": scores,
            "report": report, "summary": summary, "comparisons": comparisons,
            "diverged": diverged, "errors": errors,
            "units": {"computed": store.computed, "loaded": store.loaded}}
