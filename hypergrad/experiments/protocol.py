"""Section 5's choices measured the other way: MARTHE as the authors' release runs it, and the
book's own settings (η_0, the β grid, μ = 0.999, E on a validation minibatch) varied one at a time.

Every unit is one online run of the Section 5 task (:class:`~hypergrad.experiments.mnist_schedules.MnistTask`:
same data split, model, initial weights and minibatches of a seed), so that a unit here pairs,
seed by seed, with the units of ``mnist-schedules``. The families (``s["families"]`` order is
the order of the plan, seed by seed within a family):

* ``authors-clip100``, ``authors-noclip``: MARTHE with both adaptive rules as in the authors' TensorFlow release
  (``lucfra/Marthe-TF``, ``marthe/marthe_alg.py``): the hyper-learning rate starts at
  ``β_0 = 1e-8`` and the one parameter set by the user is the step size ``κ`` of its update,
  over a grid of decades; ``Δ_t`` clipped at ±100 as there, and not clipped. No κ is
  re-selected: the paper's "start high and divide by 10 until it does not diverge" procedure
  is read off the same grid (:func:`decimate`).
* ``extend``: the Section 5 β grid extended where a method's best β lies at its edge.
* ``mu0.999``: fixed μ = 0.999 (the authors' MNIST grid has it) over the Section 5 β grid.
* ``eta0``: η_0 = 0.1 (the fixed-η baseline's rate) instead of 0, near each method's best β.
* ``valbatch``: ``E`` (and its gradient) on a validation minibatch drawn at every step, as the
  authors' release does, instead of on all validation images, near each method's best β.
"""

from __future__ import annotations

import os

from hypergrad.dynamics import DivergenceError
from hypergrad.experiments.mnist_schedules import MnistTask, _task_settings, compact_run
from hypergrad.experiments.store import Unit, UnitStore, _bar, _jsonable, _seed_key
from hypergrad.loop import History, run_online
from hypergrad.online import Marthe

__all__ = ["FAMILIES", "METHOD_MU", "plan_units", "compute_unit", "finish_unit", "committed_protocol",
           "run_mnist_protocol", "decimate"]

#: the families of units (the authors' runs one family per clip: ``c`` = 100 or none)
FAMILIES = ("authors-clip100", "authors-noclip", "extend", "mu0.999", "eta0", "valbatch")

#: μ of the fixed-β online methods by name (as in Section 5's units)
METHOD_MU = {"hd": 0.0, "rtho": 1.0, "marthe-mu0.5": 0.5, "marthe-mu0.9": 0.9,
             "marthe-mu0.99": 0.99, "marthe-mu0.999": 0.999, "marthe-auto-mu": "auto"}

#: the salt of a seed's validation minibatches (the training ones use salt 0, LRS-OPT 1, 2, …)
VAL_SALT = 10**6


def _clip_key(clip) -> str:
    return "noclip" if clip is None else f"clip{clip:g}"


def _online(s: dict, family: str, method: str, beta: float, seed: int, lr0: float,
            val_batch: int | None, name: str) -> Unit:
    mu = METHOD_MU[method]
    settings_ = {**_task_settings(s), "family": family, "method": method, "mu": mu,
                 "beta": beta, "kappa": None, "clip": None, "lr0": lr0, "val_batch": val_batch,
                 "seed": seed}
    return Unit(name, _jsonable(settings_), ("online", method, beta, seed, lr0, val_batch))


def _authors(s: dict, clip, kappa: float, seed: int) -> Unit:
    a = s["authors"]
    settings_ = {**_task_settings(s), "family": "authors", "method": "marthe", "mu": "auto",
                 "beta": a["beta0"], "kappa": kappa, "clip": clip, "lr0": s["lr0"],
                 "val_batch": None, "seed": seed}
    return Unit(f"authors_{_clip_key(clip)}_kappa{kappa:g}_seed{seed}", _jsonable(settings_),
                ("authors", clip, kappa, seed))


def _clip_of(family: str):
    """The clip of an authors' family: ``authors-clip100`` → 100.0, ``authors-noclip`` → None."""
    key = family[len("authors-"):]
    return None if key == "noclip" else float(key[len("clip"):])


def family_units(s: dict, family: str, seed: int) -> list[Unit]:
    """The units of ``family`` (one of :data:`FAMILIES`) for ``seed``: see the module's
    docstring."""
    if family.startswith("authors-") and family in FAMILIES:
        return [_authors(s, _clip_of(family), float(k), seed) for k in s["authors"]["kappas"]]
    if family == "extend":
        return [_online(s, family, m, float(b), seed, s["lr0"], None,
                        f"online_{m}_beta{float(b):g}_seed{seed}")
                for m, betas in s["extend"].items() for b in betas]
    if family == "mu0.999":
        return [_online(s, family, "marthe-mu0.999", float(b), seed, s["lr0"], None,
                        f"online_marthe-mu0.999_beta{float(b):g}_seed{seed}")
                for b in s["mu0.999"]["betas"]]
    if family == "eta0":
        e = s["eta0"]
        return [_online(s, family, m, float(b), seed, e["lr0"], None,
                        f"eta{e['lr0']:g}_{m}_beta{float(b):g}_seed{seed}")
                for m, betas in e["betas"].items() for b in betas]
    if family == "valbatch":
        v = s["valbatch"]
        return [_online(s, family, m, float(b), seed, s["lr0"], v["size"],
                        f"valbatch{v['size']}_{m}_beta{float(b):g}_seed{seed}")
                for m, betas in v["betas"].items() for b in betas]
    raise ValueError(f"unknown family {family!r} (one of {FAMILIES})")


def plan_units(s: dict) -> list[Unit]:
    """Every unit, family by family in the order of ``s["families"]`` and seed by seed within
    each, so that an interrupted sweep leaves whole seeds of the first families done. No unit
    is batched: each is computed alone (its result is that of its settings alone)."""
    return [u for family in s["families"] for seed in s["seeds"]
            for u in family_units(s, family, seed)]


def finish_unit(s: dict, unit: Unit, run: dict) -> dict:
    """A run's stored form: outcome, final metrics and its η_t (μ_t, β_t where adapted)."""
    keep = ["lr"]
    if unit.settings["mu"] == "auto":
        keep.append("mu")
    if unit.settings["kappa"] is not None:
        keep.append("beta")
    return compact_run(run, tuple(keep))


def _run(task: MnistTask, s: dict, seed: int, lr0: float, beta: float, mu, kappa=None,
         clip=None, val_batch: int | None = None) -> dict:
    """One online run (Algorithm 1) on ``seed``; ``E`` on all validation images, or on a
    fresh validation minibatch of ``val_batch`` images at every step."""
    from hypergrad.data import sample_batches
    from hypergrad.models import module_objective

    tuner = Marthe(task.dyn, lr=lr0, beta=beta, mu=mu, kappa=kappa, clip=clip)
    if val_batch is None:
        objectives = task.objective
    else:
        vb = sample_batches(task.data["val"], val_batch, s["T"], seed=_seed_key(seed, VAL_SALT))
        objectives = [module_objective(task.net, b) for b in vb]
    hist = History.empty()
    try:
        ostate, _ = run_online(tuner, task.init_params(seed), task.batches(seed), objectives,
                               max_loss_ratio=s["max_loss_ratio"],
                               callback=lambda _, info: hist.append(info))
    except DivergenceError as e:
        return {"diverged": True, "diverged_at": e.step, "val_loss": None, "val_acc": None,
                "test_acc": None, "kappa": kappa, **vars(hist)}
    return {"diverged": False, "diverged_at": None, "kappa": kappa,
            **task.evaluate(tuner.params(ostate)), **vars(hist)}


def compute_unit(task: MnistTask, s: dict, unit: Unit, store: UnitStore | None = None,
                 progress: bool = False) -> dict:
    """Compute one unit of :func:`plan_units` (alone)."""
    u = unit.settings
    run = _run(task, s, u["seed"], u["lr0"], u["beta"], u["mu"], u["kappa"], u["clip"],
               u["val_batch"])
    return finish_unit(s, unit, run)


def decimate(runs_by_kappa: dict[float, dict]) -> tuple[float | None, dict | None]:
    """Section 4's step-size selection read off a grid of κ: from the largest κ down, the
    first run that did not diverge, as "start with a large κ and divide it by 10 until the run
    does not diverge" would pick on a grid of decades. ``(None, None)`` when every run diverged."""
    for kappa in sorted(runs_by_kappa, reverse=True):
        if not runs_by_kappa[kappa]["diverged"]:
            return kappa, runs_by_kappa[kappa]
    return None, None


def run_mnist_protocol(s: dict, out_dir: str | os.PathLike | None = None, device="cpu",
                       progress: bool = True, store: UnitStore | None = None,
                       population: int = 1) -> dict:
    """Every unit of :func:`plan_units`, computed or loaded.

    Returns ``{"settings", "runs": {unit name: stored run}, "units"}``; with a read-only
    ``store`` nothing is computed and the units not stored are left out (``missing`` lists
    them). ``population`` is accepted for the command line and ignored: each unit runs alone.
    """
    from hypergrad.experiments.store import MissingUnit

    s = _jsonable(s)
    store = store or UnitStore(out_dir)
    task = None if store.readonly else MnistTask(s, device)
    units = plan_units(s)
    out = {"settings": s, "runs": {}}
    missing = []
    with _bar(len(units), "protocol runs", progress) as bar:
        for unit in units:
            try:
                out["runs"][unit.name] = store.get(
                    unit.name, unit.settings, lambda unit=unit: compute_unit(task, s, unit))
            except MissingUnit:
                missing.append(unit.name)
            bar.update()
    out["units"] = {"computed": store.computed, "loaded": store.loaded}
    if store.readonly:
        out["missing"] = missing
    return out


def committed_protocol(root: str | os.PathLike = "results", scale: str = "paper",
                       s: dict | None = None) -> dict:
    """The protocol study's units committed under ``<root>/mnist-protocol/<scale>/units``,
    read and never computed: :func:`run_mnist_protocol` over a read-only store, with
    ``missing`` (the planned units not stored) and ``done``/``total`` counts."""
    from hypergrad.experiments.settings import settings
    from hypergrad.experiments.store import result_dir

    s = settings("mnist-protocol", scale) if s is None else s
    store = UnitStore(result_dir(root, "mnist-protocol", scale), readonly=True)
    out = run_mnist_protocol(s, store=store, progress=False)
    out["done"], out["total"] = len(out["runs"]), len(out["runs"]) + len(out["missing"])
    return out
