"""Beyond one learning rate: MARTHE with one learning rate per layer
(:class:`hypergrad.optim.Marthe` with one parameter group per linear layer) against MARTHE with
one rate for the whole network and against a fixed η, on Section 5's MNIST task.

Every run is a plain PyTorch loop over an ``nn.Module`` (the two-line change of the chapter):
the same initial weights and minibatches per seed for every method, ``E`` the loss on the
validation images. The value each method is run with (η for the fixed baseline, β for the
online ones) is chosen on the selection seeds by mean validation accuracy, and the methods are
compared on the other seeds, paired by seed. Each run is one unit (resumable, committed like
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
from hypergrad.experiments.stats import paired
from hypergrad.experiments.store import UnitStore, float32_trace

__all__ = ["METHODS", "layer_groups", "train_run", "run_per_layer"]

#: the methods compared, and the value each is tuned over
METHODS = {"fixed": "fixed_lrs", "marthe-one-eta": "betas", "marthe-per-layer": "betas"}


def layer_groups(net: torch.nn.Module) -> list[dict]:
    """One parameter group per linear layer (weight and bias together), input to output."""
    return [{"params": list(m.parameters())} for m in net.modules()
            if isinstance(m, torch.nn.Linear)]


def _module(task: MnistTask, seed: int) -> torch.nn.Module:
    """A fresh MLP holding the seed's initial weights ``w_0``."""
    from hypergrad.models import MLP

    net = MLP(tuple(task.s["sizes"])).to(task.device)
    w0 = task.init_params(seed)
    with torch.no_grad():
        for n, p in net.named_parameters():
            p.copy_(w0[n])
    return net


def train_run(task: MnistTask, method: str, value: float, seed: int) -> dict:
    """One run of ``method`` (``"fixed"``: η = ``value``; ``"marthe-one-eta"``, ``"marthe-per-layer"``:
    β = ``value``) on ``seed``: final validation loss and accuracy, test accuracy, the
    learning rate of every group at every step (float32), and whether (and when) it diverged
    (a non-finite number, or a training loss above ``max_loss_ratio`` times the first)."""
    from hypergrad import optim

    if method not in METHODS:
        raise ValueError(f"method must be one of {tuple(METHODS)}, got {method!r}")
    s = task.s
    net = _module(task, seed)
    xv, yv = task.data["val"]
    if method == "fixed":
        opt = torch.optim.SGD(net.parameters(), lr=value)
    else:
        groups = layer_groups(net) if method == "marthe-per-layer" else net.parameters()
        opt = optim.Marthe(groups, "sgd", lr=s["lr0"], beta=value, mu=s["mu"],
                           val_closure=lambda: F.cross_entropy(net(xv), yv))
    lrs: list[list[float]] = [[] for _ in opt.param_groups]
    first, diverged_at = None, None
    start = time.perf_counter()
    for t, (x, y) in enumerate(task.batches(seed)):
        try:
            if method == "fixed":
                opt.zero_grad()
                loss = F.cross_entropy(net(x), y)
                loss.backward()
                opt.step()
                loss = loss.detach()
                if not math.isfinite(float(loss)):
                    raise DivergenceError(t, "the training loss")
            else:
                loss = opt.step(lambda x=x, y=y: F.cross_entropy(net(x), y))
        except DivergenceError as e:
            diverged_at = e.step
            break
        for g, group in enumerate(opt.param_groups):
            lrs[g].append(float(group["lr"]))
        first = float(loss) if first is None else first
        if float(loss) > s["max_loss_ratio"] * first:
            diverged_at = t
            break
    wall = time.perf_counter() - start
    out = {"diverged": diverged_at is not None, "diverged_at": diverged_at,
           "lr": [float32_trace(v) for v in lrs], "seconds_per_step": wall / max(1, len(lrs[0]))}
    if diverged_at is not None:
        return {**out, "val_loss": None, "val_acc": None, "test_acc": None}
    return {**out, **task.evaluate({n: p.detach() for n, p in net.named_parameters()})}


def _unit_settings(s: dict, method: str, value: float, seed: int) -> dict:
    task = {k: s[k] for k in ("n_train", "n_val", "data_seed", "sizes", "batch_size", "T",
                              "max_loss_ratio")}
    online = {"lr0": s["lr0"], "mu": s["mu"]} if method != "fixed" else {}
    return {**task, **online, "method": method, "value": value, "seed": seed}


def run_per_layer(s: dict, out_dir: str | os.PathLike | None = None, device="cpu",
                  progress: bool = True, readonly: bool = False) -> dict:
    """Select each method's value on ``s["select_seeds"]``, then run it on ``s["seeds"]``.

    Returns the settings, every run (``runs[method][value][seed]``), the chosen value per
    method with the selection scores, the reported seeds on which each method diverged
    (``diverged``), and the paired comparisons on the reported seeds
    (:func:`~hypergrad.experiments.stats.paired` of validation and of test accuracy, a
    diverged run counting as accuracy 0).

    ``readonly=True`` only reads the units in ``out_dir`` and raises
    :class:`~hypergrad.experiments.store.MissingUnit` for the first one it lacks (what a
    chapter does with the paper-scale runs)."""
    task = MnistTask(s, device)
    store = UnitStore(out_dir, readonly=readonly)
    runs: dict[str, dict] = {m: {} for m in METHODS}

    def get(method, value, seed):
        name = f"per_layer_{method}_{value:g}_seed{seed}"
        res = store.get(name, _unit_settings(s, method, value, seed),
                        lambda: train_run(task, method, value, seed))
        runs[method].setdefault(f"{value:g}", {})[seed] = res
        return res

    def acc(r, key="val_acc"):
        return 0.0 if r[key] is None else r[key]

    chosen, scores = {}, {}
    for method, grid in METHODS.items():
        scores[method] = {f"{v:g}": sum(acc(get(method, v, sd)) for sd in s["select_seeds"])
                          / len(s["select_seeds"]) for v in s[grid]}
        chosen[method] = max(s[grid], key=lambda v, m=method: scores[m][f"{v:g}"])
    report = {m: [get(m, chosen[m], sd) for sd in s["seeds"]] for m in METHODS}
    comparisons = {}
    for a, b in (("marthe-per-layer", "marthe-one-eta"), ("marthe-per-layer", "fixed"),
                 ("marthe-one-eta", "fixed")):
        comparisons[f"{a} - {b}"] = {
            key: paired([acc(ra, key) - acc(rb, key)
                         for ra, rb in zip(report[a], report[b], strict=True)])
            for key in ("val_acc", "test_acc")}
    diverged = {m: [sd for sd, r in zip(s["seeds"], report[m], strict=True) if r["diverged"]]
                for m in METHODS}
    return {"settings": s, "runs": runs, "chosen": chosen, "selection_scores": scores,
            "report": report, "comparisons": comparisons, "diverged": diverged,
            "units": {"computed": store.computed, "loaded": store.loaded}}
