"""Section 5: LRS-OPT, the online schedules of HD, RTHO and MARTHE against β, and the quality of their hypergradient estimates, on MNIST."""

from __future__ import annotations

import json
import math
import os
import time

import torch

from hypergrad.dynamics import DivergenceError, sgd
from hypergrad.experiments.analysis import centred_mean, hypergradient_agreement
from hypergrad.experiments.section5_claims import (  # noqa: F401
    PAPER_LRS_OPT_ITERATIONS,
    mnist_claims,
    summarize_online,
)
from hypergrad.experiments.store import (
    MissingUnit,
    Unit,
    UnitStore,
    _bar,
    _jsonable,
    _seed_key,
    compute_batched,
    float32_trace,
    select_kappa,
)
from hypergrad.hypergradient import hypergradient
from hypergrad.loop import History, run_online
from hypergrad.lrs_opt import lrs_opt
from hypergrad.online import Marthe
from hypergrad.schedules import (
    constant,
)

__all__ = ['MnistTask', 'online_units', 'online_unit', 'plan_units', 'compute_unit', 'finish_unit', 'compact_run',
           'lrs_opt_settings', 'fixed_settings', 'noise_settings', 'run_mnist_schedules']


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


    def online_many(self, runs: list[tuple]) -> list[dict]:
        """Several online runs ``(params, batches, lr0, beta, mu[, kappa])`` as one population
        (:func:`hypergrad.population.run_population`): each result as :meth:`online` gives it,
        equal to it to rounding (not bit for bit: the batched kernels round differently)."""
        from hypergrad.population import run_population

        n, T = len(runs), len(runs[0][1])
        kappas = [r[5] if len(r) > 5 else None for r in runs]
        batches = [tuple(torch.stack([r[1][t][j] for r in runs]) for j in range(2)) for t in range(T)]
        pop = run_population(self.dyn, [r[0] for r in runs], batches,
                             lambda p, _: self.objective(p), torch.zeros(n, device=self.device),
                             lr=[r[2] for r in runs], beta=[r[3] for r in runs],
                             mu=[r[4] for r in runs], kappa=kappas,
                             max_loss_ratio=self.s["max_loss_ratio"])
        out = []
        for i in range(n):
            hist = vars(pop.histories[i])
            if pop.diverged[i] is not None:
                out.append({"diverged": True, "diverged_at": pop.diverged[i].step, "val_loss": None,
                            "val_acc": None, "test_acc": None, "kappa": kappas[i], **hist})
            else:
                params = {k: v[i] for k, v in pop.params.items()}
                out.append({"diverged": False, "diverged_at": None, "kappa": kappas[i],
                            **self.evaluate(params), **hist})
        return out


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


def compact_run(run: dict, traces: tuple[str, ...]) -> dict:
    """What a unit file keeps of an online run: its outcome and final metrics, and only the
    per-step ``traces`` named (of ``lr``, ``mu``, ``beta``, ``hypergradient``, ``loss``,
    ``objective``), rounded to float32 precision (:func:`~hypergrad.experiments.store.float32_trace`)."""
    all_traces = ("lr", "mu", "beta", "hypergradient", "loss", "objective")
    out = {k: v for k, v in run.items() if k not in all_traces}
    out.update({k: float32_trace(run[k]) for k in traces})
    return out


def online_units(s: dict) -> list[Unit]:
    """Section 5's online runs as units, seed by seed (all methods and ``β`` of a seed, then
    the next seed): an interrupted sweep leaves whole seeds done. The fixed-β runs can be
    computed as populations (``Unit.batch``); adaptive β chooses κ run by run (Section 4)."""
    return [online_unit(s, method, float(beta), seed) for seed in s["online"]["seeds"]
            for method in _method_specs(s) for beta in s["online"]["betas"]]


def online_unit(s: dict, method: str, beta: float, seed: int) -> Unit:
    """The unit of one online run: ``method`` (a key of the methods of ``s``) at ``β`` on
    ``seed`` (batchable unless ``β`` is adapted, as κ is then chosen run by run)."""
    mu, adaptive_beta = _method_specs(s)[method]
    settings_ = {**_task_settings(s), "method": method, "mu": mu, "beta": beta, "seed": seed,
                 "lr0": s["lr0"],
                 "kappa_start": s["online"]["kappa_start"] if adaptive_beta else None}
    return Unit(f"online_{method}_beta{beta:g}_seed{seed}", _jsonable(settings_),
                ("online", method, beta, seed),
                None if adaptive_beta else {"seed": seed, "lr0": s["lr0"], "beta": beta,
                                            "mu": mu, "kappa": None})


def lrs_opt_settings(s: dict, seed: int) -> dict:
    """The settings that determine LRS-OPT's unit for ``seed`` (the outer optimiser is named
    only when it is not the paper's projected gradient descent)."""
    lo = s["lrs_opt"]
    unit = {**_task_settings(s), "seed": seed, "init": s["fixed_lr"],
            "iterations": lo["iterations"], "step_size": lo["step_size"], "max_lr": lo["max_lr"]}
    if lo.get("optimizer", "pgd") != "pgd":
        unit["optimizer"] = lo["optimizer"]
    return _jsonable(unit)


def noise_settings(s: dict, seed: int) -> dict:
    """The settings that determine the noise unit of ``seed``: those of its LRS-OPT unit
    (whose final schedule it reads), the number of draws and the smoothing window."""
    nz = s["noise"]
    return _jsonable({**lrs_opt_settings(s, seed), "draws": nz["draws"], "window": nz["window"]})


def fixed_settings(s: dict, seed: int) -> dict:
    """The settings that determine the fixed-η baseline's unit for ``seed``."""
    return _jsonable({**_task_settings(s), "lr": s["fixed_lr"], "seed": seed})


def plan_units(s: dict) -> list[Unit]:
    """The units of Section 5 that do not depend on others, in the order they are handed to
    the workers: the fixed-η baseline of every seed (short), then seed by seed the LRS-OPT
    unit of that seed (the longest; one worker takes it while the others go on) and the
    online runs of that seed, so that an interrupted sweep leaves whole seeds of both done.
    (The quality units read the online results, so they come after.)"""
    seeds = sorted(set(s["online"]["seeds"]) | set(s["lrs_opt"]["seeds"])
                   | set(s["quality"]["seeds"]))
    units = [Unit(f"fixed_seed{seed}", fixed_settings(s, seed), ("fixed", seed), None)
             for seed in seeds]
    online = online_units(s)
    for seed in seeds:
        if seed in s["lrs_opt"]["seeds"]:
            units.append(Unit(f"lrs_opt_seed{seed}", lrs_opt_settings(s, seed),
                              ("lrs_opt", seed), None))
        units += [u for u in online if u.compute[3] == seed]
    return units


def _traces_of(s: dict, method: str, seed: int) -> tuple[str, ...]:
    mu, adaptive_beta = _method_specs(s)[method]
    keep = ["lr"]
    if mu == "auto":
        keep.append("mu")
    if adaptive_beta:
        keep.append("beta")
    if seed in s["quality"]["seeds"]:      # the quality analysis reads Δ_t of these runs
        keep.append("hypergradient")
    return tuple(keep)


def finish_unit(s: dict, unit: Unit, run: dict) -> dict:
    """An online run's stored form (:func:`compact_run` with the traces the analyses read)."""
    _, method, _, seed = unit.compute
    return compact_run(run, _traces_of(s, method, seed))


def compute_unit(task: MnistTask, s: dict, unit: Unit, store: UnitStore | None = None,
                 progress: bool = False) -> dict:
    """Compute one unit of :func:`plan_units` (one at a time)."""
    if unit.compute[0] == "lrs_opt":
        return _lrs_opt_unit(task, s, unit.compute[1], store or UnitStore(None), progress)
    if unit.compute[0] == "fixed":
        seed = unit.compute[1]
        return task.train_fixed(task.init_params(seed), constant(s["T"], s["fixed_lr"]),
                                task.batches(seed))
    _, method, beta, seed = unit.compute
    mu, adaptive_beta = _method_specs(s)[method]
    params, batches = task.init_params(seed), task.batches(seed)
    if not adaptive_beta:
        run = task.online(params, batches, s["lr0"], beta, mu)
    else:
        on, tries = s["online"], []

        def attempt(kappa):
            tries.append(kappa)
            return task.online(params, batches, s["lr0"], beta, mu, kappa)

        try:
            run = select_kappa(attempt, on["kappa_start"], max_tries=8)[1]
        except DivergenceError:
            run = task.online(params, batches, s["lr0"], beta, mu, 0.0) | {"kappa": None}
        run["kappa_tries"] = len(tries)      # runs made by the κ selection (1: no re-run)
    return finish_unit(s, unit, run)


# =========================================================================== Section 5
def run_mnist_schedules(s: dict, out_dir: str | os.PathLike | None = None, device="cpu",
                        progress: bool = True, store: UnitStore | None = None,
                        population: int = 1) -> dict:
    """Section 5 on MNIST: LRS-OPT, the online schedules against ``β``, hypergradient quality.

    Returns ``{"settings", "fixed", "lrs_opt", "online", "quality", "units"}``:

    * ``fixed[seed]``: the fixed-η baseline (``η_t = fixed_lr``) — final val/test metrics;
    * ``lrs_opt[seed]``: the optimised schedule ``lrs``, ``history`` (``f_T`` per
      hyper-iteration, on fresh minibatches) and the final metrics of training with ``lrs`` on
      the seed's own minibatches (the ones the online methods see); ``diverged`` is ``None``,
      or the error that stopped LRS-OPT early (``lrs`` is then its last schedule);
    * ``noise[seed]``: how noisy LRS-OPT's hypergradient is at its start and final schedule
      of ``seed``, and the final schedule against its centred mean;
    * ``online[method][beta][seed]``: one online run (schedule ``lr``, ``mu``, ``beta``,
      ``hypergradient`` = ``Δ_t``, final metrics, ``diverged``); for ``"marthe"`` (adaptive
      ``β``) ``κ`` is chosen per run by the step-size selection procedure of Section 4;
    * ``quality[seed]``: ``own[method]`` — Δ_t of each method's run at ``quality.beta`` (by
      default ``"best"``: the best ``β`` of :func:`~hypergrad.experiments.section5_claims.summarize_online`, in ``quality_betas``) and the
      exact ``∂f_T/∂η_t`` of the schedule that run produced, along the same trajectory;
      ``replay`` — the exact hypergradient along the fixed-η trajectory and ``Δ_t`` of each
      ``μ`` in ``replay_mus`` along that same trajectory (``β = 0``);
    * ``missing`` (read-only ``store`` only): the fixed-η, LRS-OPT, noise and quality units that
      are not stored and were left out (every online unit must be stored);
    * ``wall_time_s``: the seconds each unit took (``lrs_opt[seed]``,
      ``online[method][beta][seed]``), as computed or as saved in its unit file (``None``
      when not recorded) — the cost comparison of online methods and LRS-OPT.
    """
    s = _jsonable(s)
    store = store or UnitStore(out_dir)
    # a read-only store (committed results) never computes: no task, no data loaded
    task = None if store.readonly else MnistTask(s, device)
    base = _task_settings(s)
    specs = _method_specs(s)
    on, lo, q = s["online"], s["lrs_opt"], s["quality"]
    betas = [float(b) for b in on["betas"]]
    seeds = sorted(set(on["seeds"]) | set(lo["seeds"]) | set(q["seeds"]))
    n_online = len(specs) * len(betas) * len(on["seeds"])
    out = {"settings": s, "fixed": {}, "lrs_opt": {}, "noise": {},
           "online": {m: {} for m in specs}, "quality": {}}
    missing = []

    def optional(name, get):
        """``get()``; with a read-only store, ``None`` (and ``name`` noted) when missing."""
        if not store.readonly:
            return get()
        try:
            return get()
        except MissingUnit:
            missing.append(name)
            return None

    # -- the fixed-η baseline
    for seed in seeds:
        unit = Unit(f"fixed_seed{seed}", fixed_settings(s, seed), ("fixed", seed))
        found = optional(unit.name, lambda unit=unit: store.get(
            unit.name, unit.settings, lambda: compute_unit(task, s, unit)))
        if found is not None:
            out["fixed"][str(seed)] = found

    # -- LRS-OPT (Problem 1 by projected gradient descent on η, exact hypergradient)
    for seed in lo["seeds"]:
        found = optional(f"lrs_opt_seed{seed}",
                         lambda seed=seed: _lrs_opt_unit(task, s, seed, store, progress))
        if found is not None:
            out["lrs_opt"][str(seed)] = found

    # -- how noisy LRS-OPT's hypergradient is (reads the seed's LRS-OPT schedule)
    for seed in s["noise"]["seeds"]:
        name = f"noise_seed{seed}"
        if str(seed) not in out["lrs_opt"]:
            if not store.readonly:
                raise ValueError(f"noise seed {seed} is no LRS-OPT seed ({lo['seeds']})")
            missing.append(name)
            continue
        found = optional(name, lambda seed=seed, name=name: store.get(
            name, noise_settings(s, seed),
            lambda: _noise(task, s, seed, out["lrs_opt"][str(seed)]["lrs"])))
        if found is not None:
            out["noise"][str(seed)] = found

    # -- the online methods, over β and seeds (--population N: the fixed-β units not stored
    # yet, N at a time as one batched computation)
    units = {u.compute[1:]: u for u in online_units(s)}
    if population > 1 and not store.readonly:
        compute_batched(task, list(units.values()), store, population,
                        lambda unit, run: finish_unit(s, unit, run))

    def stored_online(method, beta, seed):
        unit = units.get((method, beta, seed)) or online_unit(s, method, beta, seed)
        return store.get(unit.name, unit.settings, lambda: compute_unit(task, s, unit))

    with _bar(n_online, "online runs", progress) as bar:
        for method in specs:
            for beta in betas:
                runs = out["online"][method].setdefault(f"{beta:g}", {})
                for seed in on["seeds"]:
                    runs[str(seed)] = stored_online(method, beta, seed)
                    bar.update()

    # -- hypergradient quality along one trajectory
    best = summarize_online(out)["best"]
    qbetas = {m: float(q["beta"]) if q["beta"] != "best" else
              (best[m] if best[m] is not None else betas[len(betas) // 2]) for m in specs}
    out["quality_betas"] = qbetas
    for seed in q["seeds"]:
        unit = {**base, "seed": seed, "betas": qbetas, "fixed_lr": s["fixed_lr"], "lr0": s["lr0"],
                "replay_mus": q["replay_mus"], "methods": list(specs),
                "kappa_start": on["kappa_start"]}

        def quality(seed=seed, unit=unit):
            if store.readonly:        # the own runs are read only to compute the unit
                return store.get(f"quality_seed{seed}", unit, lambda: None)
            own_runs = {m: stored_online(m, qbetas[m], seed) for m in specs}
            return store.get(f"quality_seed{seed}", unit,
                             lambda: _quality(task, s, seed, own_runs))

        found = optional(f"quality_seed{seed}", quality)
        if found is not None:
            out["quality"][str(seed)] = found

    out["units"] = {"computed": store.computed, "loaded": store.loaded}
    if store.readonly:
        out["missing"] = missing
    # wall time of each unit (LRS-OPT: its iterations; online: one run), for the cost claim
    out["wall_time_s"] = {
        "lrs_opt": {str(sd): store.wall.get(f"lrs_opt_seed{sd}") for sd in lo["seeds"]},
        "online": {m: {f"{b:g}": {str(sd): store.wall.get(f"online_{m}_beta{b:g}_seed{sd}")
                                  for sd in on["seeds"]} for b in betas} for m in specs}}
    return out


def _lrs_opt_unit(task: MnistTask, s: dict, seed: int, store: UnitStore, progress: bool) -> dict:
    lo = s["lrs_opt"]
    unit = lrs_opt_settings(s, seed)
    name = f"lrs_opt_seed{seed}"
    found = store.lookup(name, _jsonable(unit))
    if found is not None:
        store.loaded += 1
        return found
    if store.readonly:
        raise MissingUnit(name, store.why_missing(name))
    params = task.init_params(seed)
    save_path = store.partial(name, {"unit": _jsonable(unit)})  # a bad one is set aside
    start = time.perf_counter()
    done = json.loads(save_path.read_text())["iterations"] if (
        save_path is not None and save_path.exists()) else 0
    with _bar(lo["iterations"], f"LRS-OPT seed {seed}", progress) as bar:
        bar.update(done)
        # A run whose noisy update sends the schedule where training diverges stops there and
        # keeps the last schedule whose f_T was finite (res.lrs; res.diverged says where).
        res = lrs_opt(task.dyn, params, constant(s["T"], s["fixed_lr"]),
                      lambda it: task.batches(seed, salt=it + 1), task.objective,
                      iterations=lo["iterations"], step_size=lo["step_size"],
                      max_lr=lo["max_lr"], optimizer=lo.get("optimizer", "pgd"),
                      save_path=save_path, progress=False,
                      settings={"unit": _jsonable(unit)}, callback=lambda *_: bar.update())
    lrs, history, iterations = res.lrs, res.history, res.iterations
    d = res.diverged
    diverged = None if d is None else (
        f"diverged at step {d['step']} of hyper-iteration {d['iteration']}: {d['message']}")
    wall = res.meta.get("wall_time_s", time.perf_counter() - start)
    final = task.train_fixed(params, lrs, task.batches(seed))
    result = _jsonable({"lrs": lrs, "history": history, "iterations": iterations,
                        "diverged": diverged, **final})
    store.put(name, unit, result, wall)
    if save_path is not None:
        save_path.unlink(missing_ok=True)
    return result


def _noise(task: MnistTask, s: dict, seed: int, final_lrs) -> dict:
    """How noisy the hypergradient that drives LRS-OPT is, and what its noise leaves in the
    schedule: over ``draws`` fresh minibatch draws of ``seed`` that LRS-OPT never saw (drawn
    as its own are, after its ``iterations`` draws: the final schedule was fitted to those),

    * ``start``, ``final``: at LRS-OPT's starting schedule (``η_t = fixed_lr``) and at its
      final one, ``f_T`` of each draw and the per-step mean and sample standard deviation of
      ``∂f_T/∂η_t`` (Eq. 4, reverse mode) over the draws;
    * ``smoothed``: ``f_T`` and the validation accuracy of the final schedule and of its
      centred mean over ``window`` steps, trained on the same draws (a paired comparison).

    A draw on which training diverges is recorded as ``None`` and left out of the statistics.
    """
    nz, T = s["noise"], s["T"]
    params = task.init_params(seed)
    first = s["lrs_opt"]["iterations"] + 1      # LRS-OPT's iteration i draws salt i + 1
    draws = [task.batches(seed, salt=first + k) for k in range(nz["draws"])]
    final = torch.tensor(final_lrs, dtype=torch.float64)
    schedules = {"start": constant(T, s["fixed_lr"]), "final": final}
    out = {}
    for key, lrs in schedules.items():
        values, grads = [], []
        for batches in draws:
            try:
                value, grad = hypergradient(task.dyn, params, lrs, batches, task.objective)
            except DivergenceError:
                values.append(None)
                continue
            values.append(float(value))
            grads.append(grad.double())
        g = torch.stack(grads) if grads else torch.zeros(0, T, dtype=torch.float64)
        out[key] = {"f_T": values, "draws": len(grads),
                    "mean": float32_trace(g.mean(0)) if grads else None,
                    "sd": float32_trace(g.std(0)) if len(grads) > 1 else None}
    smooth = centred_mean(final, nz["window"])
    pair = {"final": [], "smoothed": []}
    for batches in draws:
        for key, lrs in (("final", final), ("smoothed", smooth)):
            pair[key].append(task.train_fixed(params, lrs.tolist(), batches))
    out["smoothed"] = {"lr": float32_trace(smooth),
                       **{f"{k}_{m}": [r[m] for r in rs] for k, rs in pair.items()
                          for m in ("val_loss", "val_acc")}}
    return _jsonable(out)


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
