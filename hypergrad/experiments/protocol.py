"""Section 5's choices measured the other way: MARTHE as the authors' release runs it, and the
book's own settings (η_0, the β grid, μ = 0.999, E on a validation minibatch) varied one at a time.

Every unit is one online run of the Section 5 task (:class:`~hypergrad.experiments.mnist_schedules.MnistTask`:
same data split, model, initial weights and minibatches of a seed), so that a unit here pairs,
seed by seed, with the units of ``mnist-schedules``. The families (``s["families"]`` order is
the order of the plan, seed by seed within a family):

* ``authors-clip100``, ``authors-noclip``: MARTHE with both adaptive rules as in the authors' TensorFlow release
  (``lucfra/Marthe-TF``, ``marthe/marthe_alg.py``): the hyper-learning rate starts at
  ``β_0 = 1e-8`` and the one parameter set by the user is the step size ``κ`` of its update,
  over a grid of decades; ``Δ_t`` clipped at ±100 as there, and not clipped (on
  ``s["authors"]["noclip_kappas"]``, a part of the grid). No κ is
  re-selected: the paper's "start high and divide by 10 until it does not diverge" procedure
  is read off the same grid (:func:`decimate`).
* ``extend``: the Section 5 β grid extended where a method's best β lies at its edge.
* ``mu0.999``: fixed μ = 0.999 (the authors' MNIST grid has it) over the Section 5 β grid.
* ``eta0``: η_0 = 0.1 (the fixed-η baseline's rate) instead of 0, near each method's best β
  (on the family's own ``seeds``, as ``valbatch``).
* ``valbatch``: ``E`` (and its gradient) on a validation minibatch drawn at every step, as the
  authors' release does, instead of on all validation images, near each method's best β.
* ``lrs-adam``, ``lrs-pgd``, ``lrs-heldout``: an LRS-OPT reference that is shown to converge
  (issue 21, item 2), on the seeds of ``s["lrs_ref"]`` (not ``s["seeds"]``). ``lrs-adam``: per
  seed, LRS-OPT (:func:`~hypergrad.lrs_opt.lrs_opt`) from ``η_t = init`` by projected Adam with
  no cap, on Section 5's LRS-OPT minibatches (iteration ``i`` draws salt ``i + 1``), with the
  mean of the iterates from ``average_from`` on (Polyak–Ruppert) beside the last one and
  snapshots of both every ``snapshot_every`` iterations; ``lrs-pgd``: the same by the paper's
  plain projected gradient descent, as many iterations, on ``pgd_seeds``; ``lrs-heldout``:
  ``f_T`` of every snapshot (the last iterate and the average) on ``draws`` fixed held-out
  draws that LRS-OPT never saw (:func:`~hypergrad.lrs_opt_heldout.trace_heldout`), read by
  :func:`lrs_convergence` (and, Adam against PGD, :func:`lrs_versus`). These units store
  themselves and resume within themselves (``Unit.compute[0] == "lrs_opt"``); a held-out
  unit reads its run's stored unit, and waits while another process on this machine is
  computing that run.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from contextlib import contextmanager

from hypergrad.dynamics import DivergenceError
from hypergrad.experiments.analysis import normalised_distance
from hypergrad.experiments.mnist_schedules import MnistTask, _task_settings, compact_run
from hypergrad.experiments.stats import paired
from hypergrad.experiments.store import (
    MissingUnit,
    Unit,
    UnitStore,
    _bar,
    _jsonable,
    _seed_key,
    float32_trace,
)
from hypergrad.io import atomic_write_json
from hypergrad.loop import History, run_online
from hypergrad.lrs_opt import lrs_opt
from hypergrad.lrs_opt_heldout import trace_heldout
from hypergrad.online import Marthe
from hypergrad.schedules import constant

__all__ = ["FAMILIES", "LRS_FAMILIES", "METHOD_MU", "plan_units", "family_units", "compute_unit",
           "finish_unit", "committed_protocol", "run_mnist_protocol", "decimate",
           "lrs_convergence", "lrs_versus"]

#: the families of units (the authors' runs one family per clip, ``c`` = 100 or none)
FAMILIES = ("authors-clip100", "authors-noclip", "extend", "mu0.999", "eta0", "valbatch",
            "lrs-adam", "lrs-pgd", "lrs-heldout")

#: the LRS-OPT reference's families (their seeds are ``s["lrs_ref"]``'s, not ``s["seeds"]``)
LRS_FAMILIES = ("lrs-adam", "lrs-pgd", "lrs-heldout")

#: an LRS-OPT reference unit saves its progress every this many iterations
LRS_SAVE_EVERY = 5

#: seconds between two looks at a unit that another process is computing
LRS_POLL_S = 30.0

#: μ of the fixed-β online methods by name (as in Section 5's units)
METHOD_MU = {"hd": 0.0, "rtho": 1.0, "marthe-mu0.5": 0.5, "marthe-mu0.9": 0.9,
             "marthe-mu0.99": 0.99, "marthe-mu0.999": 0.999, "marthe-auto-mu": "auto"}

#: the salt of a seed's validation minibatches (the training ones use salt 0, LRS-OPT 1, 2, …)
VAL_SALT = 10**6


def _clip_key(clip) -> str:
    return "noclip" if clip is None else f"clip{clip:g}"


def _online(s: dict, family: str, method: str, beta: float, seed: int, lr0: float,
            val_batch: int | None, name: str, kappa_start: float | None = None) -> Unit:
    mu = "auto" if method == "marthe" else METHOD_MU[method]
    settings_ = {**_task_settings(s), "family": family, "method": method, "mu": mu,
                 "beta": beta, "kappa": None, "clip": None, "lr0": lr0, "val_batch": val_batch,
                 "seed": seed}
    if kappa_start is not None:             # κ selected per run (the book's reading)
        settings_["kappa_start"] = kappa_start
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


def _lrs_seeds(s: dict, optimizer: str) -> list[int]:
    """The seeds of the LRS-OPT reference run by ``optimizer`` (``"adam"`` or ``"pgd"``)."""
    r = s["lrs_ref"]
    return [int(k) for k in (r["seeds"] if optimizer == "adam" else r["pgd_seeds"])]


def _lrs_run(s: dict, optimizer: str, seed: int) -> Unit:
    """The LRS-OPT reference run of ``seed`` by ``optimizer`` (family ``lrs-<optimizer>``)."""
    r = s["lrs_ref"]
    settings_ = {**_task_settings(s), "family": f"lrs-{optimizer}", "seed": seed,
                 "optimizer": optimizer, "step_size": r["step_size"][optimizer],
                 "max_lr": r["max_lr"], "init": r["init"], "iterations": r["iterations"],
                 "average_from": r["average_from"], "snapshot_every": r["snapshot_every"]}
    return Unit(f"lrsref_{optimizer}_seed{seed}", _jsonable(settings_),
                ("lrs_opt", "run", optimizer, seed))


def _lrs_heldout(s: dict, optimizer: str, seed: int) -> Unit:
    """The held-out trace of that run: its settings and the number of draws."""
    run = _lrs_run(s, optimizer, seed)
    settings_ = {**run.settings, "family": "lrs-heldout", "draws": s["lrs_ref"]["draws"]}
    return Unit(f"lrsref_heldout_{optimizer}_seed{seed}", _jsonable(settings_),
                ("lrs_opt", "heldout", optimizer, seed))


def family_units(s: dict, family: str, seed: int) -> list[Unit]:
    """The units of ``family`` (one of :data:`FAMILIES`) for ``seed``: see the module's
    docstring. (An LRS-OPT reference family has units only for its own seeds.)"""
    if family in ("lrs-adam", "lrs-pgd"):
        optimizer = family[len("lrs-"):]
        return [_lrs_run(s, optimizer, seed)] if seed in _lrs_seeds(s, optimizer) else []
    if family == "lrs-heldout":
        return [_lrs_heldout(s, o, seed) for o in ("adam", "pgd") if seed in _lrs_seeds(s, o)]
    if family.startswith("authors-") and family in FAMILIES:
        clip = _clip_of(family)
        a = s["authors"]
        kappas = a["kappas"] if clip is not None else a.get("noclip_kappas", a["kappas"])
        return [_authors(s, clip, float(k), seed) for k in kappas]
    if family == "extend":
        return [_online(s, family, m, float(b), seed, s["lr0"], None,
                        f"online_{m}_beta{float(b):g}_seed{seed}")
                for m, betas in s["extend"].items() for b in betas]
    if family == "extend-marthe":
        # the book's reading of adaptive β (β_0 on the axis, κ decimated from kappa_start per
        # run, as Section 5's units) below its grid's edge
        e = s["extend-marthe"]
        return [_online(s, family, "marthe", float(b), seed, s["lr0"], None,
                        f"online_marthe_beta{float(b):g}_seed{seed}",
                        kappa_start=e["kappa_start"]) for b in e["betas"]]
    if family == "mu0.999":
        return [_online(s, family, "marthe-mu0.999", float(b), seed, s["lr0"], None,
                        f"online_marthe-mu0.999_beta{float(b):g}_seed{seed}")
                for b in s["mu0.999"]["betas"]]
    if family in ("eta0", "valbatch") and seed not in s[family].get("seeds", s["seeds"]):
        return []                       # these two families run on their own seeds only
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
    is batched: each is computed alone (its result is that of its settings alone).

    The LRS-OPT reference's families run on the seeds of ``s["lrs_ref"]``; ``lrs-heldout``
    lists the Adam runs' traces seed by seed, then the PGD runs' (the last to finish)."""
    units = []
    for family in s["families"]:
        if family == "lrs-heldout":
            units += [_lrs_heldout(s, o, k) for o in ("adam", "pgd") for k in _lrs_seeds(s, o)]
        elif family in LRS_FAMILIES:
            o = family[len("lrs-"):]
            units += [_lrs_run(s, o, k) for k in _lrs_seeds(s, o)]
        else:
            units += [u for seed in s["seeds"] for u in family_units(s, family, seed)]
    return units


def finish_unit(s: dict, unit: Unit, run: dict) -> dict:
    """A run's stored form: outcome, final metrics and its η_t (μ_t, β_t where adapted)."""
    keep = ["lr"]
    if unit.settings["mu"] == "auto":
        keep.append("mu")
    if unit.settings["kappa"] is not None or unit.settings.get("kappa_start") is not None:
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


def _select(task: MnistTask, s: dict, u: dict) -> dict:
    """The book's reading of adaptive β: κ from ``kappa_start`` divided by 10 until the run
    does not diverge (Section 4's procedure, as Section 5's units run it)."""
    from hypergrad.experiments.store import select_kappa

    tries = []

    def attempt(kappa):
        tries.append(kappa)
        return _run(task, s, u["seed"], u["lr0"], u["beta"], "auto", kappa, None,
                    u["val_batch"])

    try:
        run = select_kappa(attempt, u["kappa_start"], max_tries=8)[1]
    except DivergenceError:
        run = _run(task, s, u["seed"], u["lr0"], u["beta"], "auto", 0.0) | {"kappa": None}
    run["kappa_tries"] = len(tries)
    return run


def compute_unit(task: MnistTask, s: dict, unit: Unit, store: UnitStore | None = None,
                 progress: bool = False) -> dict:
    """Compute one unit of :func:`plan_units` (alone).

    An LRS-OPT reference unit (``unit.compute[0] == "lrs_opt"``) is looked up in ``store``
    and, when not stored, computed (resuming from its partial file), stored and returned: it
    stores itself, as ``hypergrad.experiments.parallel._compute_job`` expects. A held-out
    unit loads (or computes) its run first. With a read-only store a unit not stored is a
    :class:`~hypergrad.experiments.store.MissingUnit`. Other units are returned, not
    stored (their caller stores them)."""
    if unit.compute[0] == "lrs_opt":
        store = store or UnitStore(None)
        if unit.compute[1] == "run":
            return _lrs_ref_run(task, s, unit, store, progress)
        return _lrs_ref_heldout(task, s, unit, store, progress)
    u = unit.settings
    if u.get("kappa_start") is not None:
        return finish_unit(s, unit, _select(task, s, u))
    run = _run(task, s, u["seed"], u["lr0"], u["beta"], u["mu"], u["kappa"], u["clip"],
               u["val_batch"])
    return finish_unit(s, unit, run)


# =========================================================================== LRS-OPT reference
def _lock_path(store: UnitStore, name: str):
    return store.path(name, ".lock")


@contextmanager
def _computing(store: UnitStore, name: str):
    """Mark the unit ``name`` as being computed by this process (``<name>.lock``: pid and
    host), for as long as the block runs."""
    path = _lock_path(store, name)
    if path is not None:
        atomic_write_json(path, {"pid": os.getpid(), "host": socket.gethostname()})
    try:
        yield
    finally:
        if path is not None:
            path.unlink(missing_ok=True)


def _computed_elsewhere(store: UnitStore, name: str) -> bool:
    """Whether another live process of this machine holds the lock of the unit ``name`` (a
    lock of a process that has ended, of this process or of another host is ignored)."""
    path = _lock_path(store, name)
    if path is None or os.name != "posix" or not path.exists():
        return False
    data = store.read_json(path)
    if not isinstance(data, dict) or data.get("host") != socket.gethostname():
        return False
    pid = data.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)                 # signal 0: sends nothing, says whether pid exists
    except PermissionError:
        return True                     # it exists, under another user
    except OSError:
        return False
    return True


def _lrs_ref_run(task: MnistTask, s: dict, unit: Unit, store: UnitStore,
                 progress: bool = False) -> dict:
    """An LRS-OPT reference run (family ``lrs-adam`` or ``lrs-pgd``), stored by itself.

    Stored: ``lrs`` (the last schedule), ``history`` (``f_T`` per iteration, on that
    iteration's minibatches), ``iterations``, ``diverged`` (``None`` or where and why it
    stopped), ``val_loss``, ``val_acc``, ``test_acc`` of training with ``lrs`` on the seed's
    own minibatches (the ones the online methods see), ``averaged`` (the mean of the iterates
    from ``average_from`` on; ``None`` before), ``averaged_count``, ``averaged_metrics`` (the
    same metrics for ``averaged``; ``None`` without it) and ``snapshots`` (every
    ``snapshot_every`` iterations, the schedule and the average at float32 precision). The
    unit file's ``meta.wall_time_s`` is the run's wall time summed over its sessions."""
    name, u = unit.name, unit.settings
    _, _, optimizer, seed = unit.compute
    while (not store.readonly and store.lookup(name, u) is None
           and _computed_elsewhere(store, name)):
        time.sleep(LRS_POLL_S)           # another worker computes it: wait, do not duplicate
    found = store.load(name, u)
    if found is not None:
        return found
    params = task.init_params(seed)
    save_path = store.partial(name, {"unit": u})       # a bad one is set aside
    start = time.perf_counter()
    done = json.loads(save_path.read_text())["iterations"] if (
        save_path is not None and save_path.exists()) else 0
    with _computing(store, name), _bar(u["iterations"], f"LRS-OPT reference {optimizer} "
                                       f"seed {seed}", progress) as bar:
        bar.update(done)
        res = lrs_opt(task.dyn, params, constant(u["T"], u["init"]),
                      lambda it: task.batches(seed, salt=it + 1), task.objective,
                      iterations=u["iterations"], step_size=u["step_size"],
                      max_lr=u["max_lr"], optimizer=optimizer,
                      average_from=u["average_from"], snapshot_every=u["snapshot_every"],
                      save_path=save_path, save_every=LRS_SAVE_EVERY, progress=False,
                      settings={"unit": u}, callback=lambda *_: bar.update())
        d = res.diverged
        diverged = None if d is None else (
            f"diverged at step {d['step']} of hyper-iteration {d['iteration']}: {d['message']}")
        wall = res.meta.get("wall_time_s", time.perf_counter() - start)
        batches = task.batches(seed)
        last = task.train_fixed(params, res.lrs, batches)
        averaged = (None if res.averaged is None
                    else task.train_fixed(params, res.averaged, batches))
        result = _jsonable({"optimizer": optimizer, "lrs": res.lrs, "history": res.history,
                            "iterations": res.iterations, "diverged": diverged, **last,
                            "averaged": res.averaged, "averaged_count": res.averaged_count,
                            "averaged_metrics": averaged, "snapshots": res.snapshots})
        store.put(name, u, result, wall)
        if save_path is not None:
            save_path.unlink(missing_ok=True)
    return result


def _lrs_ref_heldout(task: MnistTask, s: dict, unit: Unit, store: UnitStore,
                     progress: bool = False) -> dict:
    """A run's held-out trace (family ``lrs-heldout``): its run is loaded (or computed first)."""
    _, _, optimizer, seed = unit.compute
    run = None
    if not store.readonly and store.lookup(unit.name, unit.settings) is None:
        run = _lrs_ref_run(task, s, _lrs_run(s, optimizer, seed), store, progress)
    return store.get(unit.name, unit.settings, lambda: _heldout_trace(task, unit, run))


def _heldout_trace(task: MnistTask, unit: Unit, run: dict) -> dict:
    """``f_T`` of the run's starting schedule (iteration 0), of every snapshot and of where it
    stopped (when that is no snapshot: a run that diverged), last iterate and average, on
    ``draws`` fixed draws of the seed's minibatches that LRS-OPT never saw (salts after its
    iterations'); :func:`~hypergrad.lrs_opt_heldout.trace_heldout`'s result with the evaluated
    ``schedules`` (``{"lrs", "averaged"}``: one per snapshot, float32 precision)."""
    u = unit.settings
    seed = u["seed"]
    first = u["iterations"] + 1         # iteration i of LRS-OPT draws salt i + 1
    draws = [task.batches(seed, salt=first + k) for k in range(u["draws"])]
    snaps = [{"iteration": 0, "lrs": float32_trace([u["init"]] * u["T"]), "averaged": None}]
    snaps += list(run["snapshots"] or [])
    if run["iterations"] not in [x["iteration"] for x in snaps]:
        snaps.append({"iteration": run["iterations"], "lrs": float32_trace(run["lrs"]),
                      "averaged": None if run["averaged"] is None
                      else float32_trace(run["averaged"])})
    trace = trace_heldout(task.dyn, task.init_params(seed), snaps, draws, task.objective)
    return {**trace, "schedules": {"lrs": [x["lrs"] for x in snaps],
                                   "averaged": [x["averaged"] for x in snaps]}}


def _finite_mean(values) -> float | None:
    x = [v for v in values or [] if v is not None and math.isfinite(v)]
    return sum(x) / len(x) if x else None


def lrs_convergence(heldout: dict) -> dict:
    """Whether an LRS-OPT reference has stopped moving, read off its held-out trace (a
    ``lrs-heldout`` unit: ``{"iteration", "lrs", "averaged", "draws"[, "schedules"]}``).

    For the last iterate (``"lrs"``) and for the average (``"averaged"``), the last two
    snapshots' ``f_T`` are paired draw by draw: ``change`` is
    :func:`~hypergrad.experiments.stats.paired` of ``f_T(last) − f_T(previous)`` (draws where
    either diverged left out, counted in ``dropped``), and ``stopped`` is whether its 95 %
    interval contains 0 (``None`` when fewer than two draws pair up, or the average is not in
    both snapshots). ``f_T`` is the mean over the draws at the last snapshot, ``spread`` the
    draws' sample standard deviation there (the noise the change is read against), ``mean``
    the mean ``f_T`` of every snapshot (the trace). ``distance`` is the normalised RMS
    distance (:func:`~hypergrad.experiments.analysis.normalised_distance`) between the last
    two snapshots' schedules (``None`` without ``schedules``). ``converged``: both stopped.
    """
    its = list(heldout["iteration"])
    if len(its) < 2:
        raise ValueError(f"a held-out trace needs two snapshots to read a change, got {its}")
    out: dict = {"iterations": its[-2:], "draws": heldout["draws"]}
    schedules = heldout.get("schedules") or {}
    for key in ("lrs", "averaged"):
        values = heldout[key]
        a, b = values[-2], values[-1]
        trace = [_finite_mean(v) for v in values]
        if a is None or b is None:
            out[key] = {"change": None, "stopped": None, "dropped": None,
                        "f_T": _finite_mean(b), "spread": None, "mean": trace}
        else:
            pairs = [(x, y) for x, y in zip(a, b, strict=True)
                     if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
            change = paired([y - x for x, y in pairs])
            last = [y for _, y in pairs]
            spread = (math.sqrt(sum((y - sum(last) / len(last)) ** 2 for y in last)
                                / (len(last) - 1)) if len(last) >= 2 else None)
            stopped = (bool(change["lo"] <= 0 <= change["hi"]) if change["n"] >= 2 else None)
            out[key] = {"change": change, "stopped": stopped, "dropped": len(a) - len(pairs),
                        "f_T": _finite_mean(b), "spread": spread, "mean": trace}
        sched = schedules.get(key) or []
        x, y = (sched[-2], sched[-1]) if len(sched) >= 2 else (None, None)
        ok = x is not None and y is not None and None not in x and None not in y
        out[key]["distance"] = normalised_distance(x, y) if ok else None
    stops = [out[k]["stopped"] for k in ("lrs", "averaged")]
    out["converged"] = None if None in stops else all(stops)
    return out


def lrs_versus(adam: dict, pgd: dict, key: str = "averaged") -> dict:
    """Projected Adam against the paper's projected gradient descent on one seed, from their
    held-out traces on the same draws (``lrs-heldout`` units of the same seed).

    ``key``: ``"averaged"`` (the averaged schedules) or ``"lrs"`` (the last iterates); the
    averaged schedules fall back to the last iterates when either run has none (a run that
    stopped before its averaging began). The result's ``key`` says which was compared.
    ``final``: :func:`~hypergrad.experiments.stats.paired` of ``f_T(PGD) − f_T(Adam)`` over the
    draws at each run's last snapshot (> 0: Adam's schedule is better). ``adam_reaches_pgd``:
    the first snapshot at which Adam's mean ``f_T`` is at most PGD's final mean (``None``:
    never); ``ratio``: PGD's iterations over that one, the honest iteration ratio (PGD needs
    ``ratio`` times as many iterations for what Adam has there; ``None`` when Adam never gets
    there, a ratio below 1 when it gets there late). ``pgd_reaches_adam``: the converse."""
    def means(tr):
        return [(it, _finite_mean(v)) for it, v in zip(tr["iteration"], tr[key], strict=True)
                if v is not None and _finite_mean(v) is not None]

    if adam["draws"] != pgd["draws"]:
        raise ValueError(f"the traces have {adam['draws']} and {pgd['draws']} draws: not paired")
    if key == "averaged" and not (means(adam) and means(pgd)):
        key = "lrs"      # a run stopped before its averaging began: compare the last iterates
    a_last, p_last = adam[key][-1], pgd[key][-1]
    final = None
    if a_last is not None and p_last is not None:
        final = paired([p - a for a, p in zip(a_last, p_last, strict=True)
                        if a is not None and p is not None])
    am, pm = means(adam), means(pgd)

    def first_at_most(trace, target):
        return None if target is None else next((it for it, m in trace if m <= target), None)

    pgd_final = pm[-1][1] if pm else None
    adam_final = am[-1][1] if am else None
    at = first_at_most(am, pgd_final)
    return {"key": key, "final": final, "adam_iterations": adam["iteration"][-1],
            "pgd_iterations": pgd["iteration"][-1], "adam_final": adam_final,
            "pgd_final": pgd_final, "adam_reaches_pgd": at,
            "ratio": pgd["iteration"][-1] / at if at else None,
            "pgd_reaches_adam": first_at_most(pm, adam_final)}


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

    Returns ``{"settings", "runs": {unit name: stored run}, "lrs_ref": {unit name: stored
    LRS-OPT reference run or held-out trace}, "units"}`` (``runs``: the online runs only);
    with a read-only ``store`` nothing is computed and the units not stored are left out
    (``missing`` lists them). ``population`` is accepted for the command line and ignored:
    each unit runs alone.
    """
    s = _jsonable(s)
    store = store or UnitStore(out_dir)
    task = None if store.readonly else MnistTask(s, device)
    units = plan_units(s)
    out = {"settings": s, "runs": {}, "lrs_ref": {}}
    missing = []
    with _bar(len(units), "protocol runs", progress) as bar:
        for unit in units:
            try:
                if unit.compute[0] == "lrs_opt":      # stores itself, resuming within the unit
                    out["lrs_ref"][unit.name] = compute_unit(task, s, unit, store, progress)
                else:
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
    ``missing`` (the planned units not stored) and ``done``/``total`` counts (of every unit,
    the LRS-OPT reference's included)."""
    from hypergrad.experiments.settings import settings
    from hypergrad.experiments.store import result_dir

    s = settings("mnist-protocol", scale) if s is None else s
    store = UnitStore(result_dir(root, "mnist-protocol", scale), readonly=True)
    out = run_mnist_protocol(s, store=store, progress=False)
    done = len(out["runs"]) + len(out["lrs_ref"])
    out["done"], out["total"] = done, done + len(out["missing"])
    return out
