"""The experiments of Part II (chapters 5–7) as plain functions, and their command line.

Three experiments, each a pure function of a settings dict that returns a JSON-serialisable
dict (lists, numbers, strings, ``None`` for a missing value):

* :func:`run_mnist_schedules` — Section 5: LRS-OPT with the exact hypergradient, the online
  schedules of HD, RTHO and MARTHE against ``β``, and the quality of the online hypergradient
  estimates against the exact ``∂f_T/∂η_t`` along the same trajectory;
* :func:`run_real_world` — Section 6: fixed schedules (exponential decay, staircase, SGDR)
  against HD (on the training loss), RTHO and MARTHE, on MNIST at quick scale and on
  CIFAR-10 (VGG-11-BN, SGD-momentum) / CIFAR-100 (ResNet-18, Adam) at paper scale;
* :func:`run_sensitivity` — Appendix C: MARTHE's final validation error over a ``β × μ`` grid.

:func:`settings` gives each experiment's settings at a scale (``"tiny"`` for tests,
``"quick"`` for the book on a CPU, ``"paper"`` for the paper's settings on a GPU).

Resuming
--------
A run is cut into *units* (one seed × method × β online run, one LRS-OPT seed, one training
run). With an output folder, every finished unit is saved to its own JSON file under
``<out>/units/`` with the settings that determine it; a later call skips the units whose file
holds the same settings, so an interrupted run resumes without redoing finished work (an
LRS-OPT unit also resumes *within* the unit, through :func:`hypergrad.schedules.lrs_opt`;
a training run of :func:`run_real_world` resumes from its last finished epoch). A unit file
with other settings is recomputed (the old file is kept as ``*.json.stale``).

Command line::

    python -m hypergrad.experiments mnist-schedules --scale paper --out results/ --device cuda
    python -m hypergrad.experiments real-world --scale paper --out results/ --device cuda
    python -m hypergrad.experiments sensitivity --scale quick --out results/ --seeds 3

writes ``results/<experiment>/<scale>/results.json`` (settings, results and
:func:`hypergrad.schedules.run_metadata`: commit, hardware, versions, wall time) and the unit
files beside it; the chapters plot ``results.json`` when it is present.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from hypergrad.dynamics import DivergenceError, sgd
from hypergrad.hypergradient import hypergradient
from hypergrad.online import History, Marthe, run_online, select_hyper_lr
from hypergrad.schedules import (
    LrsOptResult,
    atomic_write_json,
    constant,
    exponential_decay,
    lrs_opt,
    run_metadata,
    sgdr,
    staircase,
)

__all__ = [
    "EXPERIMENTS", "SCALES", "settings", "run", "run_mnist_schedules", "run_real_world",
    "run_sensitivity", "load_results", "load_or_run", "summarize_online", "summarize_real_world",
    "hypergradient_agreement", "fixed_schedule", "MnistTask", "UnitStore", "label", "main",
]

EXPERIMENTS = ("mnist-schedules", "real-world", "sensitivity")
SCALES = ("tiny", "quick", "paper")

#: Display names of the methods, used by the chapters and the figures.
LABELS = {
    "fixed": "fixed η", "lrs-opt": "LRS-OPT", "hd": "HD", "rtho": "RTHO",
    "marthe-auto-mu": "MARTHE (adaptive μ)", "marthe": "MARTHE (adaptive μ and β)",
    "exponential": "exponential decay", "staircase": "staircase", "sgdr": "SGDR",
}


def label(method: str) -> str:
    """The display name of ``method`` (``"marthe-mu0.9"`` is MARTHE with μ fixed at 0.9)."""
    if method.startswith("marthe-mu"):
        return f"MARTHE (μ = {method[len('marthe-mu'):]})"
    return LABELS.get(method, method)


# =========================================================================== settings
_MNIST_PAPER_TASK = {
    "n_train": 7000, "n_val": 700, "data_seed": 0, "sizes": [784, 500, 500, 500, 10],
    "batch_size": 100, "T": 500,
}


def _mnist_schedules_settings(scale: str) -> dict:
    paper = {
        "experiment": "mnist-schedules", "scale": "paper", **_MNIST_PAPER_TASK,
        "lr0": 0.0,                 # η_0 of every online method                 [choice]
        "fixed_lr": 0.1,            # the fixed-η baseline, and LRS-OPT's start  [choice]
        "accuracy_threshold": 0.8,  # runs below it are discarded (Fig. 2 right) [choice]
        "max_loss_ratio": 10.0,     # a run whose training loss exceeds 10× the first diverged
        "online": {"seeds": list(range(20)), "betas": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
                   "fixed_mus": [0.5, 0.9, 0.99], "kappa_start": 1e-1},
        "lrs_opt": {"seeds": list(range(4)), "iterations": 5000, "step_size": 0.2,
                    "max_lr": 0.3},         # the cap stops single-step spikes      [choice]
        "quality": {"seeds": [0], "beta": "best", "replay_mus": [0.0, 0.5, 0.9, 0.99, 1.0, "auto"]},
    }
    if scale == "paper":
        return paper
    quick = copy.deepcopy(paper)
    quick.update(scale="quick", sizes=[784, 100, 100, 10], T=100)
    quick["online"].update(seeds=[0, 1], betas=[1e-4, 1e-3, 1e-2], fixed_mus=[0.9])
    quick["lrs_opt"].update(seeds=[0, 1], iterations=40)
    quick["quality"].update(replay_mus=[0.0, 0.9, 0.99, 1.0, "auto"])
    if scale == "quick":
        return quick
    tiny = copy.deepcopy(quick)
    tiny.update(scale="tiny", n_train=400, n_val=100, sizes=[784, 16, 10], batch_size=50, T=8)
    tiny["online"].update(seeds=[0], betas=[1e-3], fixed_mus=[0.9])
    tiny["lrs_opt"].update(seeds=[0], iterations=2)
    tiny["quality"].update(replay_mus=[0.0, "auto"])
    return tiny


def _real_world_settings(scale: str) -> dict:
    methods_sgd = {
        "exponential": {"gamma": 0.99},              # per (paper) epoch
        "staircase": {"every": 60, "factor": 0.1},   # epochs
        "sgdr": {"T_0": 10, "T_mult": 2},            # epochs
        "hd": {"beta": 1e-3},                        # on the training loss (Baydin et al.)
        "rtho": {"beta": 1e-4},
        "marthe": {"beta": 1e-4, "mu": "auto", "kappa_start": 1e-1},
    }
    methods_adam = copy.deepcopy(methods_sgd)
    methods_adam["hd"]["beta"] = 1e-7
    methods_adam["rtho"]["beta"] = 1e-8
    methods_adam["marthe"].update(beta=1e-8, kappa_start=1e-3)
    common = {"weight_decay": 5e-4, "schedule_epochs": 200, "data_seed": 0,
              "max_loss_ratio": 10.0, "probe_steps": 50, "evals_per_epoch": 1}
    paper = {
        "experiment": "real-world", "scale": "paper", "seeds": [0, 1, 2],
        "tasks": [
            {"name": "cifar10-vgg11bn-sgdm", "dataset": "cifar10", "model": "vgg11_bn",
             "model_kw": {}, "optimizer": "sgd", "momentum": 0.9, "lr": 0.1,
             "batch_size": 128, "val_batch_size": 128, "epochs": 200, "n_train": None,
             "n_val": 5000, "augment": True, "methods": methods_sgd, **common},
            {"name": "cifar100-resnet18-adam", "dataset": "cifar100", "model": "resnet18",
             "model_kw": {}, "optimizer": "adam", "lr": 3e-4, "batch_size": 128,
             "val_batch_size": 128, "epochs": 200, "n_train": None, "n_val": 5000,
             "augment": True, "methods": methods_adam, **common},
        ],
    }
    if scale == "paper":
        return paper
    mnist = {"dataset": "mnist", "batch_size": 100, "val_batch_size": 100, "epochs": 2,
             "n_train": 7000, "n_val": 700, "augment": False, **common, "probe_steps": 10,
             "evals_per_epoch": 5}
    quick = {
        "experiment": "real-world", "scale": "quick", "seeds": [0, 1],
        "tasks": [
            # η_0 = 0.03: at the paper's 0.1 this small CNN does not train for every seed
            {"name": "mnist-smallcnn-sgdm", "model": "smallcnn", "model_kw": {"width": 8},
             "optimizer": "sgd", "momentum": 0.9, "lr": 0.03, **mnist,
             "methods": copy.deepcopy(methods_sgd)},
            {"name": "mnist-mlp-adam", "model": "mlp", "model_kw": {"sizes": [784, 100, 100, 10]},
             "optimizer": "adam", "lr": 3e-4, **mnist, "methods": copy.deepcopy(methods_adam)},
        ],
    }
    if scale == "quick":
        return quick
    tiny = copy.deepcopy(quick)
    tiny.update(scale="tiny", seeds=[0])
    for task in tiny["tasks"]:
        task.update(n_train=200, n_val=100, n_test=200, batch_size=50, val_batch_size=50,
                    epochs=2, probe_steps=2, evals_per_epoch=2)
        if task["model"] == "smallcnn":
            task["model_kw"] = {"width": 2}
        else:
            task["model_kw"] = {"sizes": [784, 8, 10]}
    return tiny


def _sensitivity_settings(scale: str) -> dict:
    paper = {
        "experiment": "sensitivity", "scale": "paper", **_MNIST_PAPER_TASK,
        "lr0": 0.0, "max_loss_ratio": 10.0, "seeds": list(range(5)),
        "betas": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
        "mus": [0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0, "auto"],
        "kappa": 1e-4,              # the κ of the adaptive-β panel [choice]
    }
    if scale == "paper":
        return paper
    quick = copy.deepcopy(paper)
    quick.update(scale="quick", sizes=[784, 100, 100, 10], T=100, seeds=[0],
                 betas=[1e-4, 3e-4, 1e-3, 3e-3, 1e-2], mus=[0.0, 0.5, 0.9, 0.99, 1.0, "auto"])
    if scale == "quick":
        return quick
    tiny = copy.deepcopy(quick)
    tiny.update(scale="tiny", n_train=400, n_val=100, sizes=[784, 16, 10], batch_size=50, T=6,
                betas=[1e-3, 1e-2], mus=[0.0, "auto"])
    return tiny


def settings(experiment: str, scale: str = "quick") -> dict:
    """The settings of ``experiment`` at ``scale`` (a fresh dict: change it freely).

    ``"paper"`` follows Section 5/6 and Appendix C where the paper's numbers survived; where
    they did not, the value is a stated choice of the book.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    makers = {"mnist-schedules": _mnist_schedules_settings, "real-world": _real_world_settings,
              "sensitivity": _sensitivity_settings}
    if experiment not in makers:
        raise ValueError(f"experiment must be one of {EXPERIMENTS}, got {experiment!r}")
    return makers[experiment](scale)


# =========================================================================== unit store
def _jsonable(obj):
    """``obj`` with tuples as lists, tensors as lists and non-finite floats as ``None``."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.tolist())
    if isinstance(obj, bool) or obj is None or isinstance(obj, str | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item"):
        return _jsonable(obj.item())
    raise TypeError(f"cannot store {type(obj).__name__} in JSON")


class UnitStore:
    """Finished units as small JSON files in ``folder/units/`` (nothing is stored without one).

    ``get`` returns a unit's stored result when its file holds the same settings, and
    otherwise computes, stores and returns it; ``computed``/``loaded`` count both cases.
    """

    def __init__(self, folder: str | os.PathLike | None):
        self.folder = None if folder is None else Path(folder)
        self.computed = 0
        self.loaded = 0
        self.memory: dict[str, tuple[dict, dict]] = {}   # units of this session

    @staticmethod
    def read_json(path: Path):
        """The JSON in ``path``, or ``None`` when it cannot be read as JSON (truncated, binary,
        a folder)."""
        try:
            return json.loads(path.read_text())
        except (ValueError, OSError):
            return None

    @staticmethod
    def set_aside(path: Path) -> Path:
        """Rename ``path`` to ``<path>.stale`` (``.stale.1``, … if taken): nothing is lost."""
        target, i = path.with_name(path.name + ".stale"), 0
        while target.exists():
            i += 1
            target = path.with_name(f"{path.name}.stale.{i}")
        os.replace(path, target)
        return target

    def path(self, name: str, suffix: str = ".json") -> Path | None:
        return None if self.folder is None else self.folder / "units" / f"{name}{suffix}"

    def lookup(self, name: str, unit_settings: dict):
        """The stored result, or ``None`` (a file with other settings is moved aside)."""
        if name in self.memory and self.memory[name][0] == unit_settings:
            return self.memory[name][1]
        path = self.path(name)
        if path is None or not path.exists():
            return None
        data = self.read_json(path)
        if (isinstance(data, dict) and data.get("settings") == unit_settings
                and isinstance(data.get("result"), dict)):
            return data["result"]
        self.set_aside(path)   # truncated, foreign or of other settings: recomputed, kept aside
        return None

    def partial(self, name: str, settings: dict) -> Path | None:
        """Where the unit ``name`` keeps its LRS-OPT progress (:class:`LrsOptResult` JSON,
        ``<name>.partial.json``), ``None`` without a folder. A file there that cannot be
        resumed — truncated, foreign, malformed, or saved without the items of ``settings`` —
        is moved aside as ``*.stale``, like a unit file, so that the unit starts afresh."""
        path = self.path(name, ".partial.json")
        if path is None or not path.exists():
            return path
        data = self.read_json(path)
        saved = data.get("settings") if isinstance(data, dict) else None
        ok = isinstance(saved, dict) and all(k in saved and saved[k] == v
                                             for k, v in settings.items())
        if ok:
            try:
                saved = LrsOptResult(**data)
            except TypeError:
                ok = False
            else:
                number = (int, float)
                ok = (isinstance(saved.iterations, int) and not isinstance(saved.iterations, bool)
                      and saved.iterations >= 0 and isinstance(saved.lrs, list) and saved.lrs
                      and all(isinstance(v, number) and not isinstance(v, bool) for v in saved.lrs)
                      and isinstance(saved.history, list) and isinstance(saved.meta, dict))
        if not ok:
            self.set_aside(path)
        return path

    def checkpoint(self, name: str, unit_settings: dict) -> Path | None:
        """Where the unit ``name`` keeps its training checkpoint (``<name>.ckpt.pt``), ``None``
        without a folder. The checkpoint is tagged with the unit's settings
        (``<name>.ckpt.json``, written here): a checkpoint of other settings, without a tag, or
        that cannot be loaded is moved aside as ``*.stale`` (with its tag), so that a run is
        never resumed from another run's state; :meth:`get` removes the tag once the unit is
        stored."""
        path, tag = self.path(name, ".ckpt.pt"), self.path(name, ".ckpt.json")
        if path is None:
            return None
        unit_settings = _jsonable(unit_settings)
        if path.exists():
            ok = self.read_json(tag) == {"settings": unit_settings}
            if ok:
                try:
                    saved = torch.load(path, weights_only=False, map_location="cpu")
                    ok = isinstance(saved, dict) and "trainer" in saved and "epoch" in saved
                except Exception:  # truncated or foreign: torch raises many kinds
                    ok = False
            if not ok:
                self.set_aside(path)
                if tag.exists():
                    self.set_aside(tag)
        atomic_write_json(tag, {"settings": unit_settings})
        return path

    def get(self, name: str, unit_settings: dict, compute: Callable[[], dict]) -> dict:
        unit_settings = _jsonable(unit_settings)
        found = self.lookup(name, unit_settings)
        if found is not None:
            if name not in self.memory:
                self.loaded += 1
            self.memory[name] = (unit_settings, found)
            return found
        start = time.perf_counter()
        result = _jsonable(compute())
        self.memory[name] = (unit_settings, result)
        if self.folder is not None:
            atomic_write_json(self.path(name), {
                "settings": unit_settings, "result": result,
                "meta": run_metadata(time.perf_counter() - start)})
            self.path(name, ".ckpt.json").unlink(missing_ok=True)   # see checkpoint()
        self.computed += 1
        return result


def _bar(total: int, desc: str, progress: bool):
    """A plain-text tqdm bar on stderr (no widget), or a no-op."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, file=sys.stderr,
                dynamic_ncols=False, ncols=90, mininterval=1.0)


def _seed_key(*parts: int) -> int:
    """A deterministic generator seed from a few small integers."""
    key = 0
    for p in parts:
        key = key * 1_000_003 + int(p)
    return key % (2**63 - 1)


def _cosine(a: list[float], b: list[float]) -> float | None:
    x, y = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    n = x.norm() * y.norm()
    return float(x @ y / n) if n > 0 else None


def hypergradient_agreement(estimate: list[float], exact: list[float], start: int = 1) -> dict:
    """How well online estimates ``Δ_t`` agree with the exact ``∂f_T/∂η_t`` (``t ≥ start``).

    ``cosine``: cosine similarity of the two sequences (scale-free; a value near 1 means the
    estimates point where the exact hypergradient points, step by step). ``sign``: the fraction
    of steps, among those where both are non-zero, at which they have the same sign, i.e. at
    which the update ``η_t = η_{t-1} − β Δ_t`` moves ``η_t`` downhill on ``f_T``.
    ``cosine_trim``: the cosine without the last tenth of the steps, whose exact hypergradient
    (set by the last few updates alone) is often far larger than the rest and would dominate.
    """
    d = torch.tensor(estimate[start:], dtype=torch.float64)
    g = torch.tensor(exact[start:len(estimate)], dtype=torch.float64)
    both = (d != 0) & (g != 0)
    sign = float((torch.sign(d[both]) == torch.sign(g[both])).double().mean()) if both.any() else None
    keep = len(d) - len(exact) // 10
    return {"cosine": _cosine(d.tolist(), g.tolist()),
            "cosine_trim": _cosine(d[:keep].tolist(), g[:keep].tolist()), "sign": sign,
            "steps": int(both.sum())}


# =========================================================================== the MNIST task
class MnistTask:
    """The Section 5 task of settings ``s``: the data split, the MLP ``net``, its SGD dynamics
    ``dyn``, the validation objective ``objective`` (``E``), the initial weights of a seed
    (:meth:`init_params`) and its ``T`` minibatches (:meth:`batches`)."""

    def __init__(self, s: dict, device):
        from hypergrad.data import mnist_split
        from hypergrad.models import MLP, module_loss, module_objective

        self.s, self.device = s, torch.device(device)
        self.data = mnist_split(s["n_train"], s["n_val"], seed=s["data_seed"], device=self.device)
        self.net = MLP(tuple(s["sizes"])).to(self.device)
        self.dyn = sgd(module_loss(self.net))
        self.objective = module_objective(self.net, self.data["val"])   # E: validation loss

    def init_params(self, seed: int) -> dict:
        """``w_0`` for ``seed``: the same for every method (and for LRS-OPT) of that seed."""
        from hypergrad.models import MLP, functional

        torch.manual_seed(seed)
        return functional(MLP(tuple(self.s["sizes"])).to(self.device))[0]

    def batches(self, seed: int, salt: int = 0) -> list:
        """The ``T`` training minibatches of ``seed`` (``salt`` > 0: LRS-OPT's fresh ones)."""
        from hypergrad.data import sample_batches

        return sample_batches(self.data["train"], self.s["batch_size"], self.s["T"],
                              seed=_seed_key(seed, salt))

    def evaluate(self, params: dict) -> dict:
        from hypergrad.models import accuracy

        with torch.no_grad():
            val_loss = float(self.objective(params))
        return {"val_loss": val_loss,
                "val_acc": accuracy(self.net, params, *self.data["val"]),
                "test_acc": accuracy(self.net, params, *self.data["test"])}

    def train_fixed(self, params: dict, lrs, batches) -> dict:
        """Train with the schedule ``lrs`` (no hypergradient) and evaluate the final weights."""
        state = self.dyn.init(params)
        with torch.no_grad():
            for lr, batch in zip(lrs, batches, strict=True):
                state = self.dyn.step(state, float(lr), batch)
        out = self.evaluate(self.dyn.params(state))
        if not math.isfinite(out["val_loss"]):
            out.update(val_acc=None, test_acc=None)
        return out

    def online(self, params, batches, lr0: float, beta: float, mu, kappa=None) -> dict:
        """One online run (Algorithm 1); a diverged run is returned with ``diverged=True``."""
        tuner = Marthe(self.dyn, lr=lr0, beta=beta, mu=mu, kappa=kappa)
        hist = History.empty()
        try:
            ostate, _ = run_online(tuner, params, batches, self.objective,
                                   max_loss_ratio=self.s["max_loss_ratio"],
                                   callback=lambda _, info: hist.append(info))
        except DivergenceError as e:
            return {"diverged": True, "diverged_at": e.step, "val_loss": None, "val_acc": None,
                    "test_acc": None, "kappa": kappa, **vars(hist)}
        return {"diverged": False, "diverged_at": None, "kappa": kappa,
                **self.evaluate(tuner.params(ostate)), **vars(hist)}


def _method_specs(s: dict) -> dict:
    """Section 5's online methods: name -> (μ, adaptive β?)."""
    specs = {"hd": (0.0, False), "rtho": (1.0, False)}
    for mu in s["online"]["fixed_mus"]:
        specs[f"marthe-mu{mu:g}"] = (float(mu), False)
    specs["marthe-auto-mu"] = ("auto", False)
    specs["marthe"] = ("auto", True)
    return specs


def _task_settings(s: dict) -> dict:
    keys = ("n_train", "n_val", "data_seed", "sizes", "batch_size", "T", "max_loss_ratio")
    return {k: s[k] for k in keys}


# =========================================================================== Section 5
def run_mnist_schedules(s: dict, out_dir: str | os.PathLike | None = None, device="cpu",
                        progress: bool = True, store: UnitStore | None = None) -> dict:
    """Section 5 on MNIST: LRS-OPT, the online schedules against ``β``, hypergradient quality.

    Returns ``{"settings", "fixed", "lrs_opt", "online", "quality", "units"}``:

    * ``fixed[seed]``: the fixed-η baseline (``η_t = fixed_lr``) — final val/test metrics;
    * ``lrs_opt[seed]``: the optimised schedule ``lrs``, ``history`` (``f_T`` per
      hyper-iteration, on fresh minibatches) and the final metrics of training with ``lrs`` on
      the seed's own minibatches (the ones the online methods see); ``diverged`` is ``None``,
      or the error that stopped LRS-OPT early (``lrs`` is then its last schedule);
    * ``online[method][beta][seed]``: one online run (schedule ``lr``, ``mu``, ``beta``,
      ``hypergradient`` = ``Δ_t``, final metrics, ``diverged``); for ``"marthe"`` (adaptive
      ``β``) ``κ`` is chosen per run by the step-size selection procedure of Section 4;
    * ``quality[seed]``: ``own[method]`` — Δ_t of each method's run at ``quality.beta`` (by
      default ``"best"``: the ``β`` of the best mean accuracy, in ``quality_betas``) and the
      exact ``∂f_T/∂η_t`` of the schedule that run produced, along the same trajectory;
      ``replay`` — the exact hypergradient along the fixed-η trajectory and ``Δ_t`` of each
      ``μ`` in ``replay_mus`` along that same trajectory (``β = 0``).
    """
    s = _jsonable(s)
    store = store or UnitStore(out_dir)
    task = MnistTask(s, device)
    base = _task_settings(s)
    specs = _method_specs(s)
    on, lo, q = s["online"], s["lrs_opt"], s["quality"]
    betas = [float(b) for b in on["betas"]]
    seeds = sorted(set(on["seeds"]) | set(lo["seeds"]) | set(q["seeds"]))
    n_online = len(specs) * len(betas) * len(on["seeds"])
    out = {"settings": s, "fixed": {}, "lrs_opt": {}, "online": {m: {} for m in specs},
           "quality": {}}

    # -- the fixed-η baseline
    for seed in seeds:
        out["fixed"][str(seed)] = store.get(
            f"fixed_seed{seed}", {**base, "lr": s["fixed_lr"], "seed": seed},
            lambda seed=seed: task.train_fixed(task.init_params(seed),
                                               constant(s["T"], s["fixed_lr"]),
                                               task.batches(seed)))

    # -- LRS-OPT (Problem 1 by projected gradient descent on η, exact hypergradient)
    for seed in lo["seeds"]:
        out["lrs_opt"][str(seed)] = _lrs_opt_unit(task, s, seed, store, progress)

    # -- the online methods, over β and seeds
    def online_unit(method, beta, seed):
        mu, adaptive_beta = specs[method]
        unit = {**base, "method": method, "mu": mu, "beta": beta, "seed": seed, "lr0": s["lr0"],
                "kappa_start": on["kappa_start"] if adaptive_beta else None}

        def compute():
            params, batches = task.init_params(seed), task.batches(seed)
            if not adaptive_beta:
                return task.online(params, batches, s["lr0"], beta, mu)

            def attempt(kappa):
                res = task.online(params, batches, s["lr0"], beta, mu, kappa)
                if res["diverged"]:
                    raise DivergenceError(res["diverged_at"], "the run")
                return res

            try:
                return select_hyper_lr(attempt, on["kappa_start"], factor=10.0, max_tries=8)[1]
            except DivergenceError:
                return task.online(params, batches, s["lr0"], beta, mu, 0.0) | {"kappa": None}

        return store.get(f"online_{method}_beta{beta:g}_seed{seed}", unit, compute)

    with _bar(n_online, "online runs", progress) as bar:
        for method in specs:
            for beta in betas:
                runs = out["online"][method].setdefault(f"{beta:g}", {})
                for seed in on["seeds"]:
                    runs[str(seed)] = online_unit(method, beta, seed)
                    bar.update()

    # -- hypergradient quality along one trajectory
    best = summarize_online(out)["best"]
    qbetas = {m: float(q["beta"]) if q["beta"] != "best" else
              (best[m] if best[m] is not None else betas[len(betas) // 2]) for m in specs}
    out["quality_betas"] = qbetas
    for seed in q["seeds"]:
        own_runs = {m: online_unit(m, qbetas[m], seed) for m in specs}
        unit = {**base, "seed": seed, "betas": qbetas, "fixed_lr": s["fixed_lr"], "lr0": s["lr0"],
                "replay_mus": q["replay_mus"], "methods": list(specs),
                "kappa_start": on["kappa_start"]}
        out["quality"][str(seed)] = store.get(
            f"quality_seed{seed}", unit,
            lambda seed=seed, own_runs=own_runs: _quality(task, s, seed, own_runs))

    out["units"] = {"computed": store.computed, "loaded": store.loaded}
    return out


def _lrs_opt_unit(task: MnistTask, s: dict, seed: int, store: UnitStore, progress: bool) -> dict:
    lo = s["lrs_opt"]
    unit = {**_task_settings(s), "seed": seed, "init": s["fixed_lr"], "iterations": lo["iterations"],
            "step_size": lo["step_size"], "max_lr": lo["max_lr"]}
    name = f"lrs_opt_seed{seed}"
    found = store.lookup(name, _jsonable(unit))
    if found is not None:
        store.loaded += 1
        return found
    params = task.init_params(seed)
    save_path = store.partial(name, {"unit": _jsonable(unit)})  # a bad one is set aside
    start = time.perf_counter()
    done = json.loads(save_path.read_text())["iterations"] if (
        save_path is not None and save_path.exists()) else 0
    # lrs_opt's callback gets the schedule *after* the update: ``cur`` is the next one to be
    # evaluated, ``prev`` the last one evaluated without diverging.
    partial = json.loads(save_path.read_text()) if done else {}
    last = {"cur": partial.get("lrs") or constant(s["T"], s["fixed_lr"]).tolist(), "prev": None,
            "history": []}

    def track(it, lrs, value, grad):
        last["history"].append(float(value))
        last["prev"], last["cur"] = last["cur"], lrs.tolist()
        bar.update()

    with _bar(lo["iterations"], f"LRS-OPT seed {seed}", progress) as bar:
        bar.update(done)
        try:
            res = lrs_opt(task.dyn, params, constant(s["T"], s["fixed_lr"]),
                          lambda it: task.batches(seed, salt=it + 1), task.objective,
                          iterations=lo["iterations"], step_size=lo["step_size"],
                          max_lr=lo["max_lr"], save_path=save_path, progress=False,
                          settings={"unit": _jsonable(unit)}, callback=track)
            lrs, history, iterations, diverged = res.lrs, res.history, res.iterations, None
            wall = res.meta.get("wall_time_s", time.perf_counter() - start)
        except (DivergenceError, FloatingPointError) as err:
            # A noisy update sent the schedule where training diverges: stop, and keep the
            # last schedule whose f_T was evaluated.
            history = partial.get("history", [])[:done] + last["history"]
            iterations = len(history)
            lrs = last["prev"] if last["prev"] is not None else last["cur"]
            diverged, wall = str(err), time.perf_counter() - start
    final = task.train_fixed(params, lrs, task.batches(seed))
    result = {"lrs": lrs, "history": history, "iterations": iterations, "diverged": diverged,
              **final}
    if store.folder is not None:
        atomic_write_json(store.path(name), {
            "settings": _jsonable(unit), "result": _jsonable(result),
            "meta": run_metadata(wall)})
        save_path.unlink(missing_ok=True)
    store.computed += 1
    return _jsonable(result)


def _quality(task: MnistTask, s: dict, seed: int, own_runs: dict) -> dict:
    """Online estimates against the exact hypergradient along the same trajectory."""
    params, batches = task.init_params(seed), task.batches(seed)
    own = {}
    for method, run_ in own_runs.items():
        if run_["diverged"]:
            own[method] = {"diverged": True}
            continue
        # the exact ∂f_T/∂η_t of the schedule this run produced, on its own minibatches
        _, exact = hypergradient(task.dyn, params, torch.tensor(run_["lr"]), batches,
                                 task.objective)
        own[method] = {"diverged": False, "lr": run_["lr"], "estimate": run_["hypergradient"],
                       "exact": exact.tolist(),
                       **hypergradient_agreement(run_["hypergradient"], exact.tolist())}
    # one common trajectory (η_t = fixed_lr): β = 0 keeps η constant, only μ changes Δ_t
    lrs = constant(s["T"], s["fixed_lr"])
    _, exact = hypergradient(task.dyn, params, lrs, batches, task.objective)
    replay = {"lr": s["fixed_lr"], "exact": exact.tolist(), "estimates": {}}
    for mu in s["quality"]["replay_mus"]:
        run_ = task.online(params, batches, s["fixed_lr"], 0.0, mu)
        key = "auto" if mu == "auto" else f"{float(mu):g}"
        replay["estimates"][key] = {"estimate": run_["hypergradient"], "mu_t": run_["mu"],
                                    **hypergradient_agreement(run_["hypergradient"],
                                                              exact.tolist())}
    return {"own": own, "replay": replay}


def summarize_online(result: dict, threshold: float | None = None) -> dict:
    """Final validation accuracy per method and ``β`` over seeds, discarding bad runs.

    A run is discarded when it diverged or when its final validation accuracy is below
    ``threshold`` (default: the settings' ``accuracy_threshold``), as in Figure 2 (right).
    Returns ``{"methods": {method: {"betas", "mean", "std", "kept", "runs"}}, "best":
    {method: β with the best mean}, "threshold"}`` (``mean``/``std`` ``None`` where every run
    was discarded; ``best`` ``None`` where every ``β`` was).
    """
    thr = result["settings"]["accuracy_threshold"] if threshold is None else threshold
    out, best = {}, {}
    for method, by_beta in result["online"].items():
        rows = {"betas": [], "mean": [], "std": [], "kept": [], "runs": []}
        for beta, runs in by_beta.items():
            accs = [r["val_acc"] for r in runs.values()
                    if not r["diverged"] and r["val_acc"] is not None and r["val_acc"] >= thr]
            x = torch.tensor(accs, dtype=torch.float64)
            rows["betas"].append(float(beta))
            rows["mean"].append(float(x.mean()) if accs else None)
            rows["std"].append(float(x.std(unbiased=False)) if accs else None)
            rows["kept"].append(len(accs))
            rows["runs"].append(len(runs))
        means = [(m if m is not None else -1.0) for m in rows["mean"]]
        best[method] = rows["betas"][max(range(len(means)), key=means.__getitem__)] if any(
            m is not None for m in rows["mean"]) else None
        out[method] = rows
    return {"methods": out, "best": best, "threshold": thr}


# =========================================================================== Section 6
def _rw_data(task: dict, device, root=None) -> dict:
    from hypergrad.data import cifar_split, mnist_split

    if task["dataset"] == "mnist":
        d = mnist_split(task["n_train"], task["n_val"], seed=task["data_seed"], root=root,
                        device=device)
    else:
        d = cifar_split(task["dataset"], n_val=task["n_val"], seed=task["data_seed"], root=root,
                        device=device)
    if task.get("n_train"):
        d["train"] = tuple(v[: task["n_train"]] for v in d["train"])
    if task.get("n_test"):
        d["test"] = tuple(v[: task["n_test"]] for v in d["test"])
    return d


def _rw_model(task: dict, seed: int, device):
    from hypergrad.models import MLP, SmallCNN, resnet18, vgg11_bn

    classes = 100 if task["dataset"] == "cifar100" else 10
    kw = dict(task.get("model_kw") or {})
    torch.manual_seed(seed)
    kind = task["model"]
    if kind == "mlp":
        model = MLP(tuple(kw.get("sizes", (784, 500, 500, 500, 10))))
    elif kind == "smallcnn":
        model = SmallCNN(num_classes=classes, **kw)
    elif kind == "vgg11_bn":
        model = vgg11_bn(num_classes=classes, **kw)
    elif kind == "resnet18":
        model = resnet18(num_classes=classes, **kw)
    else:
        raise ValueError(f"unknown model {kind!r}")
    return model.to(device)


def fixed_schedule(method: str, spec: dict, lr: float, total_steps: int,
                   schedule_epochs: int) -> torch.Tensor:
    """A Section 6 baseline over ``total_steps``, its epochs those of a ``schedule_epochs`` run.

    The paper states the baselines in epochs of a 200-epoch run (decay 0.99 per epoch, ×0.1
    every 60 epochs, SGDR with ``T_0 = 10``, ``T_mult = 2``). A shorter run keeps their shape:
    step ``t`` takes the value of paper epoch ``⌊t · schedule_epochs / total_steps⌋``.
    """
    E = schedule_epochs
    if method == "exponential":
        per_epoch = exponential_decay(E, lr, spec["gamma"])
    elif method == "staircase":
        per_epoch = staircase(E, lr, spec["every"], spec["factor"])
    elif method == "sgdr":
        per_epoch = sgdr(E, lr, spec["T_0"], spec["T_mult"])
    else:
        raise ValueError(f"{method!r} is not a fixed schedule")
    idx = torch.div(torch.arange(total_steps) * E, total_steps, rounding_mode="floor")
    return per_epoch[idx.clamp(max=E - 1)]


FIXED_SCHEDULES = ("exponential", "staircase", "sgdr")


def _evaluate_module(model, x, y, batch_size: int = 1000) -> dict:
    was = model.training
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out = model(x[i: i + batch_size])
            loss += float(F.cross_entropy(out, y[i: i + batch_size], reduction="sum"))
            correct += int((out.argmax(1) == y[i: i + batch_size]).sum())
    model.train(was)
    n = max(len(x), 1)
    return {"loss": loss / n if math.isfinite(loss) else None, "acc": correct / n}


class _EpochBatches:
    """Epoch ``e`` of seed ``s``: a fixed permutation (so a resumed run sees the same batches)."""

    def __init__(self, data, task: dict, seed: int):
        self.data, self.task, self.seed = data, task, seed
        self.spe = len(data["train"][0]) // task["batch_size"]

    def epoch(self, e: int, steps: int | None = None):
        from hypergrad.data import augment_cifar

        (x, y), (xv, yv) = self.data["train"], self.data["val"]
        bs, vbs = self.task["batch_size"], self.task["val_batch_size"]
        g = torch.Generator().manual_seed(_seed_key(self.seed, e, 7))
        perm = torch.randperm(len(x), generator=g).to(x.device)
        vperm = torch.randperm(len(xv), generator=g).to(xv.device)
        nv = len(xv) // vbs
        for i in range(self.spe if steps is None else min(steps, self.spe)):
            idx = perm[i * bs:(i + 1) * bs]
            xb = x[idx]
            if self.task.get("augment"):
                xb = augment_cifar(xb, g)
            vidx = vperm[(i % nv) * vbs:(i % nv + 1) * vbs]
            yield (xb, y[idx]), (xv[vidx], yv[vidx])


def _make_trainer(model, task: dict, method: str, spec: dict, total_steps: int, kappa=None):
    from hypergrad.trainer import ModuleTrainer

    kw = dict(optimizer=task["optimizer"], weight_decay=task["weight_decay"],
              momentum=task.get("momentum", 0.0), lr=task["lr"])
    if method in FIXED_SCHEDULES:
        sched = fixed_schedule(method, spec, task["lr"], total_steps, task["schedule_epochs"])
        return ModuleTrainer(model, method="fixed", schedule=sched, **kw)
    if method == "marthe":
        return ModuleTrainer(model, method="marthe", beta=spec["beta"], mu=spec.get("mu", "auto"),
                             kappa=kappa, **kw)
    return ModuleTrainer(model, method=method, beta=spec["beta"], **kw)


def _train_unit(task, method, spec, seed, data, device, ckpt: Path | None = None,
                kappa=None, probe_steps: int | None = None, progress: bool = False) -> dict:
    """One training run of Section 6; ``probe_steps``: only that many steps (κ selection)."""
    batches = _EpochBatches(data, task, seed)
    total = batches.spe * task["epochs"]
    model = _rw_model(task, seed, device)
    trainer = _make_trainer(model, task, method, spec, total, kappa)
    rec = {"epoch": [], "val_loss": [], "val_acc": [], "test_acc": [], "train_loss": []}
    start_epoch, first = 0, None
    if ckpt is not None and ckpt.exists():
        saved = torch.load(ckpt, weights_only=False)
        trainer.load_state_dict(saved["trainer"])
        rec, start_epoch, first = saved["records"], saved["epoch"], saved["first_loss"]

    def evaluate(epoch, train_loss):
        v = _evaluate_module(model, *data["val"])
        te = _evaluate_module(model, *data["test"])
        for k, val in (("epoch", epoch), ("val_loss", v["loss"]), ("val_acc", v["acc"]),
                       ("test_acc", te["acc"]), ("train_loss", train_loss)):
            rec[k].append(val)

    if start_epoch == 0 and probe_steps is None:
        evaluate(0.0, None)
    diverged_at = None
    epochs = 1 if probe_steps is not None else task["epochs"]
    every = max(1, batches.spe // max(1, task.get("evals_per_epoch", 1)))
    with _bar(total, f"{task['name']} {method} seed {seed}", progress) as bar:
        bar.update(start_epoch * batches.spe)
        for e in range(start_epoch, epochs):
            losses = []
            for i, (train_b, val_b) in enumerate(batches.epoch(e, probe_steps)):
                # HD as Baydin et al.: E is the training loss of the minibatch of this step
                try:
                    info = trainer.step(train_b, train_b if method == "hd" else val_b)
                except DivergenceError as err:             # a non-finite E, Δ_t or η_t
                    diverged_at = err.step
                    break
                first = info.loss if first is None else first
                losses.append(info.loss)
                bar.update()
                if not (math.isfinite(info.loss) and math.isfinite(trainer.lr)) or (
                        info.loss > task["max_loss_ratio"] * max(first, 1e-12)):
                    diverged_at = info.t
                    break
                if probe_steps is None and ((i + 1) % every == 0 or i + 1 == batches.spe):
                    evaluate(round(e + (i + 1) / batches.spe, 6), sum(losses) / len(losses))
                    losses = []
            if diverged_at is not None:
                break
            if probe_steps is None and ckpt is not None:
                ckpt.parent.mkdir(parents=True, exist_ok=True)
                tmp = ckpt.with_name(ckpt.name + ".tmp")
                torch.save({"trainer": trainer.state_dict(), "records": rec, "epoch": e + 1,
                            "first_loss": first, "kappa": kappa}, tmp)
                os.replace(tmp, ckpt)
    h = trainer.history
    stride = max(1, math.ceil(len(h.lr) / MAX_POINTS))
    return {"diverged": diverged_at is not None, "diverged_at": diverged_at, "kappa": kappa,
            "steps_per_epoch": batches.spe, "lr_stride": stride, "lr": list(h.lr[::stride]),
            "mu": list(h.mu[::stride]) if method == "marthe" else None,
            "beta": list(h.beta[::stride]) if method == "marthe" else None, **rec}


#: At most this many points of a per-step record (``lr``, ``mu``, ``beta``) are kept per run.
MAX_POINTS = 4000


def run_real_world(s: dict, out_dir: str | os.PathLike | None = None, device="cpu",
                   progress: bool = True, store: UnitStore | None = None, root=None) -> dict:
    """Section 6: every fixed and online schedule on every task, for every seed.

    Returns ``{"settings", "tasks": {task: {method: {seed: run}}}, "units"}``; a run has the
    schedule ``lr`` (every ``lr_stride``-th step) and, ``evals_per_epoch`` times per epoch
    (``epoch`` in fractional epochs; 0 = before training), ``val_loss`` (unregularised
    cross-entropy on the whole validation split), ``val_acc``, ``test_acc`` and the mean
    training loss since the previous evaluation. MARTHE's ``κ`` is chosen by the step-size
    selection procedure of Section 4: start at ``kappa_start`` and
    divide by 10 until a short probe (``probe_steps``), and then the whole run, do not diverge.
    """
    s = _jsonable(s)
    store = store or UnitStore(out_dir)
    device = torch.device(device)
    out = {"settings": s, "tasks": {}}
    n = sum(len(t["methods"]) for t in s["tasks"]) * len(s["seeds"])
    with _bar(n, "training runs", progress) as bar:
        for task in s["tasks"]:
            data = None
            res = out["tasks"].setdefault(task["name"], {})
            for method, spec in task["methods"].items():
                for seed in s["seeds"]:
                    name = f"{task['name']}_{method}_seed{seed}"
                    unit = {"task": {k: v for k, v in task.items() if k != "methods"},
                            "method": method, "spec": spec, "seed": seed}

                    def compute(task=task, method=method, spec=spec, seed=seed, name=name,
                                unit=unit):
                        nonlocal data
                        data = data or _rw_data(task, device, root)
                        ckpt = store.checkpoint(name, unit)   # another run's is set aside
                        show = progress and s["scale"] == "paper"
                        if method != "marthe":
                            result = _train_unit(task, method, spec, seed, data, device, ckpt,
                                                 progress=show)
                        else:
                            result = _marthe_unit(task, spec, seed, data, device, ckpt, show)
                        if ckpt is not None:
                            ckpt.unlink(missing_ok=True)
                        return result

                    res.setdefault(method, {})[str(seed)] = store.get(name, unit, compute)
                    bar.update()
    out["units"] = {"computed": store.computed, "loaded": store.loaded}
    return out


def _marthe_unit(task, spec, seed, data, device, ckpt: Path | None, progress: bool) -> dict:
    """MARTHE with κ from the step-size selection procedure of Section 4.

    A short probe picks the first κ (from ``kappa_start``, divided by 10) whose first
    ``probe_steps`` steps do not diverge; if the full run still diverges, κ is divided by 10
    again and the run repeated, until it does not (the procedure, on the whole run).
    """
    if ckpt is not None and ckpt.exists():          # resume: the κ of the interrupted run
        kappa = torch.load(ckpt, weights_only=False)["kappa"]
    else:
        kappa = _select_kappa(task, spec, seed, data, device)
    tried = []
    while True:
        tried.append(kappa)
        result = _train_unit(task, "marthe", spec, seed, data, device, ckpt, kappa,
                             progress=progress)
        if not result["diverged"] or kappa == 0.0 or len(tried) >= 6:
            break
        if ckpt is not None:
            ckpt.unlink(missing_ok=True)
        kappa = kappa / 10.0
    result["kappa_tried"] = tried
    return result


def _select_kappa(task, spec, seed, data, device) -> float | None:
    def probe(kappa):
        r = _train_unit(task, "marthe", spec, seed, data, device, kappa=kappa,
                        probe_steps=task["probe_steps"])
        if r["diverged"]:
            raise DivergenceError(r["diverged_at"], "the probe")
        return r

    try:
        return select_hyper_lr(probe, spec["kappa_start"], factor=10.0, max_tries=10)[0]
    except DivergenceError:
        return 0.0


def summarize_real_world(result: dict) -> dict:
    """Per task and method: final test/val accuracy and val loss, mean and std over seeds."""
    out = {}
    for task, methods in result["tasks"].items():
        out[task] = {}
        for method, runs in methods.items():
            ok = [r for r in runs.values() if not r["diverged"]]
            row = {"diverged": len(runs) - len(ok), "runs": len(runs)}
            for key in ("test_acc", "val_acc", "val_loss"):
                vals = [r[key][-1] for r in ok if r[key] and r[key][-1] is not None]
                x = torch.tensor(vals, dtype=torch.float64)
                row[key] = float(x.mean()) if vals else None
                row[key + "_std"] = float(x.std(unbiased=False)) if vals else None
            out[task][method] = row
    return out


# =========================================================================== Appendix C
def run_sensitivity(s: dict, out_dir: str | os.PathLike | None = None, device="cpu",
                    progress: bool = True, store: UnitStore | None = None) -> dict:
    """Appendix C on the MNIST task: MARTHE's final validation error over ``β × μ``.

    Two panels: ``"fixed"`` — fixed ``β`` and fixed ``μ`` (no adaptation; ``μ = "auto"`` is the
    adaptive-``μ`` row for comparison); ``"adaptive-beta"`` — the same grid with ``β``
    adapted from ``β_0`` by ``κ`` (fixed). Returns ``{"settings", "panels": {panel: {"betas",
    "mus", "val_error": [[mean over seeds or None]], "diverged": [[count]], "runs": {...}}}}``.
    """
    s = _jsonable(s)
    store = store or UnitStore(out_dir)
    task = MnistTask(s, device)
    base = _task_settings(s)
    betas, mus = [float(b) for b in s["betas"]], s["mus"]
    panels = {"fixed": None, "adaptive-beta": s["kappa"]}
    out = {"settings": s, "panels": {}}
    with _bar(len(panels) * len(betas) * len(mus) * len(s["seeds"]), "grid runs", progress) as bar:
        for panel, kappa in panels.items():
            err = [[None] * len(betas) for _ in mus]
            div = [[0] * len(betas) for _ in mus]
            runs = {}
            for i, mu in enumerate(mus):
                for j, beta in enumerate(betas):
                    vals = []
                    for seed in s["seeds"]:
                        key = f"{'auto' if mu == 'auto' else format(float(mu), 'g')}"
                        name = f"sens_{panel}_mu{key}_beta{beta:g}_seed{seed}"
                        unit = {**base, "panel": panel, "mu": mu, "beta": beta, "seed": seed,
                                "kappa": kappa, "lr0": s["lr0"]}

                        def compute(mu=mu, beta=beta, seed=seed, kappa=kappa):
                            r = task.online(task.init_params(seed), task.batches(seed), s["lr0"],
                                            beta, mu, kappa)
                            keep = ("diverged", "diverged_at", "val_loss", "val_acc", "test_acc")
                            return {**{k: r[k] for k in keep}, "lr": r["lr"], "mu_mean": (
                                sum(r["mu"]) / len(r["mu"]) if r["mu"] else None)}

                        r = store.get(name, unit, compute)
                        runs[name] = r
                        if r["diverged"]:
                            div[i][j] += 1
                        else:
                            vals.append(1.0 - r["val_acc"])
                        bar.update()
                    err[i][j] = sum(vals) / len(vals) if vals else None
            out["panels"][panel] = {"kappa": kappa, "betas": betas, "mus": mus, "val_error": err,
                                    "diverged": div, "runs": runs}
    out["units"] = {"computed": store.computed, "loaded": store.loaded}
    return out


# =========================================================================== files and CLI
RUNNERS = {"mnist-schedules": run_mnist_schedules, "real-world": run_real_world,
           "sensitivity": run_sensitivity}


def result_dir(root: str | os.PathLike, experiment: str, scale: str) -> Path:
    """``<root>/<experiment>/<scale>``: where the command line writes an experiment."""
    return Path(root) / experiment / scale


def run(experiment: str, s: dict | None = None, scale: str = "quick",
        out_dir: str | os.PathLike | None = None, device="cpu", progress: bool = True) -> dict:
    """Run ``experiment`` (settings ``s``, default those of ``scale``); with ``out_dir``, resume
    from its unit files and write ``results.json`` there (settings, results, metadata)."""
    s = settings(experiment, scale) if s is None else s
    start = time.perf_counter()
    result = RUNNERS[experiment](s, out_dir=out_dir, device=device, progress=progress)
    result["meta"] = run_metadata(time.perf_counter() - start)
    result["meta"]["device"] = str(device)
    if out_dir is not None:
        atomic_write_json(Path(out_dir) / "results.json", _jsonable(result))
    return result


def load_results(experiment: str, scale: str, root: str | os.PathLike = "results") -> dict | None:
    """``<root>/<experiment>/<scale>/results.json`` if it exists, else ``None``."""
    path = result_dir(root, experiment, scale) / "results.json"
    if not path.exists():
        return None
    with open(path) as f:
        return json.load(f)


def load_or_run(experiment: str, scale: str, root: str | os.PathLike = "results", device="cpu",
                progress: bool = True, prefer: tuple[str, ...] = ("paper",)) -> dict:
    """What a chapter shows: saved results of a scale in ``prefer`` (paper first) if any are
    present under ``root``, else those of ``scale``, else a fresh run at ``scale`` (not saved).
    """
    for sc in (*prefer, scale):
        found = load_results(experiment, sc, root)
        if found is not None:
            found.setdefault("meta", {})["loaded_from"] = str(result_dir(root, experiment, sc))
            return found
    return run(experiment, scale=scale, device=device, progress=progress)


class _SettingError(ValueError):
    """A ``--set`` that names no setting or gives it a value of the wrong kind."""


def _kind(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, int | float):
        return "a number"
    return {str: "a string", list: "a list", dict: "an object"}.get(type(v), type(v).__name__)


def _conform(key: str, old, new) -> None:
    """Refuse a ``--set`` value that cannot stand where ``old`` stands in the settings: another
    kind of JSON value (a string where a number or list goes, a float where an integer goes),
    a non-finite number, a negative one where the default is >= 0, zero or less where an integer
    default is positive (sizes, counts, steps), an empty list where the default has entries, an
    object with other keys. ``null`` is accepted where the default is ``null`` or a float (e.g.
    ``lrs_opt.max_lr=null``: no cap); a number where the default is a string (``"best"``,
    ``"auto"``)."""
    def bad(why):
        raise _SettingError(f"{key}={json.dumps(new)}: {why}")

    if old is None:
        return
    if isinstance(new, float) and not math.isfinite(new):
        bad("must be finite")
    if isinstance(old, bool):
        if not isinstance(new, bool):
            bad(f"must be true or false (default {json.dumps(old)})")
    elif isinstance(old, int | float):
        if new is None and isinstance(old, float):
            return
        if isinstance(new, bool) or not isinstance(new, int | float):
            bad(f"must be a number, not {_kind(new)} (default {json.dumps(old)})")
        if isinstance(old, int) and not isinstance(new, int):
            bad(f"must be an integer (default {old})")
        if old > 0 and isinstance(old, int) and new <= 0:
            bad(f"must be a positive integer (default {old})")
        if old >= 0 and new < 0:
            bad(f"must be >= 0 (default {json.dumps(old)})")
    elif isinstance(old, str):
        if not isinstance(new, str) and (isinstance(new, bool) or not isinstance(new, int | float)):
            bad(f"must be a string or a number, not {_kind(new)} (default {json.dumps(old)})")
        if isinstance(new, int | float) and new < 0:
            bad("must be >= 0")
    elif isinstance(old, list):
        if not isinstance(new, list):
            hint = " (not valid JSON)" if isinstance(new, str) else ""
            bad(f"must be a JSON list{hint}, like the default {json.dumps(old)}")
        if old and not new:
            bad(f"must not be empty (default {json.dumps(old)})")
        for i, item in enumerate(new):
            errors = []
            for ref in old:
                try:
                    _conform(f"{key}.{i}", ref, item)
                    break
                except _SettingError as e:
                    errors.append(str(e))
            else:
                if old:
                    raise _SettingError(errors[0])
    elif isinstance(old, dict):
        if not isinstance(new, dict):
            bad(f"must be a JSON object with the keys {sorted(old)}")
        if old and set(new) != set(old):
            bad(f"must have exactly the keys {sorted(old)}; to change one, use "
                f"--set {key}.<key>=<value>")
        for k in new:
            if k in old:
                _conform(f"{key}.{k}", old[k], new[k])


def _set_path(d: dict, dotted: str, value) -> None:
    """Set the setting at the dotted path ``dotted`` (list items by index) to ``value``, after
    checking that the path exists and that ``value`` fits there (see :func:`_conform`)."""
    keys = dotted.split(".")
    if not dotted or "" in keys:
        raise _SettingError(f"{dotted!r} is not a setting path (KEY or KEY.SUBKEY, e.g. T or "
                            f"online.betas)")
    if keys[0] in ("experiment", "scale"):
        raise _SettingError(f"{keys[0]} is chosen by the command line, not by --set")
    node, path = d, []
    for k in keys:
        where = ".".join(path) or "the settings"
        if isinstance(node, dict):
            if k not in node:
                raise _SettingError(f"unknown setting {dotted!r}: {where} has no {k!r} (it has "
                                    f"{', '.join(sorted(map(str, node)))})")
            parent, index = node, k
        elif isinstance(node, list):
            if not k.isdigit() or int(k) >= len(node):
                raise _SettingError(f"unknown setting {dotted!r}: {where} is a list of "
                                    f"{len(node)}, index {k!r} is not in 0..{len(node) - 1}")
            parent, index = node, int(k)
        else:
            raise _SettingError(f"unknown setting {dotted!r}: {where} is {_kind(node)} "
                                f"({json.dumps(node)}), it has no {k!r}")
        node = parent[index]
        path.append(k)
    _conform(dotted, node, value)
    parent[index] = value


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {n}")
    return n


def _device_name(text: str) -> str:
    """argparse type: a device string torch understands (availability is checked later)."""
    try:
        torch.device(text)
    except (RuntimeError, ValueError) as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: use cpu, cuda or cuda:N "
                                         f"({e})") from None
    if torch.device(text).type == "meta":
        raise argparse.ArgumentTypeError("the meta device holds no data: use cpu or cuda")
    return text


def _check_out(p: argparse.ArgumentParser, out: Path) -> None:
    """A usage error unless ``out`` can be created and written."""
    import tempfile

    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        p.error(f"argument --out: cannot write into {out} ({e.strerror or e})")


def main(argv: list[str] | None = None) -> int:
    """The command line (``python -m hypergrad.experiments -h``). Every argument is checked
    before anything runs: a bad one is a usage error (exit status 2) naming it; an error of the
    data or the files during the run is one line on stderr (exit status 1)."""
    p = argparse.ArgumentParser(
        prog="python -m hypergrad.experiments",
        description="Run a Part II experiment at any scale and save it as JSON (resumable).")
    p.add_argument("experiment", choices=EXPERIMENTS)
    p.add_argument("--scale", choices=SCALES, default="quick")
    p.add_argument("--out", default="results",
                   help="results root; the run goes to <out>/<experiment>/<scale>/")
    p.add_argument("--device", default=None, type=_device_name,
                   help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--seeds", type=_positive_int, default=None,
                   help="number of seeds (online runs / training runs / grid runs)")
    p.add_argument("--lrs-opt-seeds", type=_positive_int, default=None,
                   help="mnist-schedules: number of LRS-OPT seeds")
    p.add_argument("--lrs-opt-iterations", type=_positive_int, default=None,
                   help="mnist-schedules: LRS-OPT iterations")
    p.add_argument("--tasks", default=None, help="real-world: comma-separated task names")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override a setting, e.g. --set T=100 --set online.betas=[1e-3]")
    p.add_argument("--print-settings", action="store_true", help="print the settings and exit")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)

    s = settings(a.experiment, a.scale)
    for flag, value in (("--lrs-opt-seeds", a.lrs_opt_seeds),
                        ("--lrs-opt-iterations", a.lrs_opt_iterations)):
        if value is not None and a.experiment != "mnist-schedules":
            p.error(f"argument {flag}: applies to mnist-schedules only, not {a.experiment}")
    if a.tasks is not None and a.experiment != "real-world":
        p.error(f"argument --tasks: applies to real-world only, not {a.experiment}")
    if a.seeds is not None:
        if a.experiment == "mnist-schedules":
            s["online"]["seeds"] = list(range(a.seeds))
        else:
            s["seeds"] = list(range(a.seeds))
    if a.lrs_opt_seeds is not None:
        s["lrs_opt"]["seeds"] = list(range(a.lrs_opt_seeds))
    if a.lrs_opt_iterations is not None:
        s["lrs_opt"]["iterations"] = a.lrs_opt_iterations
    if a.tasks is not None:
        names = [n.strip() for n in a.tasks.split(",")]
        known = [t["name"] for t in s["tasks"]]
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            p.error(f"argument --tasks: unknown task {', '.join(map(repr, unknown))} at scale "
                    f"{a.scale} (choose from {', '.join(known)})")
        s["tasks"] = [t for t in s["tasks"] if t["name"] in names]
    for item in a.set:
        key, eq, raw = item.partition("=")
        if not eq:
            p.error(f"argument --set: expected KEY=JSON, got {item!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        try:
            _set_path(s, key.strip(), value)
        except _SettingError as e:
            p.error(f"argument --set: {e}")
    if a.print_settings:
        print(json.dumps(s, indent=1))
        return 0
    from hypergrad.data import DataError, _check_device
    from hypergrad.runtime import pick_device

    try:
        device = pick_device(_check_device(a.device, "--device"))
    except ValueError as e:
        p.error(f"argument {e}")
    out = result_dir(a.out, a.experiment, a.scale)
    _check_out(p, out)
    try:
        result = run(a.experiment, s, out_dir=out, device=device, progress=not a.no_progress)
    except (DataError, OSError) as e:  # missing or corrupt data, unwritable files: no traceback
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 1
    u = result.get("units", {})
    print(f"{a.experiment} ({a.scale}) on {device}: {u.get('computed', 0)} units computed, "
          f"{u.get('loaded', 0)} loaded, {result['meta']['wall_time_s']:.1f} s -> "
          f"{out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
