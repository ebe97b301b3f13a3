"""Section 6: fixed schedules against HD, RTHO and MARTHE on real tasks (MNIST at quick scale; CIFAR-10/100 at paper scale)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from hypergrad.dynamics import DivergenceError
from hypergrad.experiments.analysis import FAILS, HOLDS, PAR_MARGIN, UNDECIDED, combine, compare
from hypergrad.experiments.store import UnitStore, _bar, _jsonable, _seed_key, select_kappa
from hypergrad.loop import check_blowup
from hypergrad.models import evaluate as evaluate_module
from hypergrad.schedules import FIXED_SCHEDULES, fixed_schedule

__all__ = ['MAX_POINTS', 'run_real_world', 'summarize_real_world', 'real_world_claims']


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
    """The trainer of one run: the task's optimizer, and the tuner named by ``method``
    (through :func:`hypergrad.online.make_tuner`)."""
    from hypergrad.trainer import ModuleTrainer

    kw = dict(optimizer=task["optimizer"], weight_decay=task["weight_decay"],
              momentum=task.get("momentum", 0.0))
    if method in FIXED_SCHEDULES:
        sched = fixed_schedule(method, spec, task["lr"], total_steps, task["schedule_epochs"])
        return ModuleTrainer(model, method="fixed", schedule=sched, **kw)
    tuner = {"beta": spec["beta"], "lr": task["lr"]}
    if method == "marthe":
        tuner.update(mu=spec.get("mu", "auto"), kappa=kappa)
    # a spec may name the algorithm of a variant (e.g. "hd-val": {"method": "hd", ...})
    return ModuleTrainer(model, method=spec.get("method", method), **tuner, **kw)


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
        v = evaluate_module(model, *data["val"])
        te = evaluate_module(model, *data["test"])
        for k, val in (("epoch", epoch), ("val_loss", v["loss"]), ("val_acc", v["acc"]),
                       ("test_acc", te["acc"]), ("train_loss", train_loss)):
            rec[k].append(val)

    if start_epoch == 0 and probe_steps is None:
        evaluate(0.0, None)
    diverged_at = None
    # E: the training loss of this step's minibatch for HD (as Baydin et al.), else a
    # validation minibatch; a spec's "objective" ("train" or "val") overrides it
    on_train = spec.get("objective", "train" if method == "hd" else "val") == "train"
    epochs = 1 if probe_steps is not None else task["epochs"]
    every = max(1, batches.spe // max(1, task.get("evals_per_epoch", 1)))
    with _bar(total, f"{task['name']} {method} seed {seed}", progress) as bar:
        bar.update(start_epoch * batches.spe)
        for e in range(start_epoch, epochs):
            losses = []
            for i, (train_b, val_b) in enumerate(batches.epoch(e, probe_steps)):
                # HD as Baydin et al.: E is the training loss of the minibatch of this step
                try:       # a non-finite E, Δ_t, η_t or L_t, or a blow-up of L_t
                    info = trainer.step(train_b, train_b if on_train else val_b)
                    first = info.loss if first is None else first
                    check_blowup(info.t, info.loss, first, task["max_loss_ratio"])
                except DivergenceError as err:
                    diverged_at = err.step
                    break
                losses.append(info.loss)
                bar.update()
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
        return _train_unit(task, "marthe", spec, seed, data, device, kappa=kappa,
                           probe_steps=task["probe_steps"])

    try:
        return select_kappa(probe, spec["kappa_start"], max_tries=10)[0]
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


def real_world_claims(res: dict) -> dict:
    """Chapter 6: the three claims of Section 6 on every task (paired per seed)."""
    s = res["settings"]
    tasks = {t["name"]: t for t in s["tasks"]}
    out = {}
    for name, methods in res["tasks"].items():
        seeds = list(methods["marthe"])

        def acc(m, k, methods=methods):
            r = methods[m][k]
            return 0.0 if r["diverged"] or not r["test_acc"] else float(r["test_acc"][-1])

        def mean(m, seeds=seeds):
            return sum(acc(m, k) for k in seeds) / len(seeds)

        best_fixed = max(FIXED_SCHEDULES, key=mean)
        par = compare([acc("marthe", k) - acc(best_fixed, k) for k in seeds])
        # on par: not worse beyond the noise, nor by more than half a point (the best fixed
        # schedule is itself picked among near-ties, so a smaller gap means nothing)
        worse = par["mean"] + max(par["t"] * par["se"], PAR_MARGIN) < 0
        beats = {m: compare([acc("marthe", k) - acc(m, k) for k in seeds]) for m in ("hd", "rtho")}
        eta0 = tasks[name]["lr"]
        peak, end = [], []
        for k in seeds:
            r = methods["marthe"][k]
            if r["diverged"]:
                continue
            lr = r["lr"]
            peak.append(max(lr[: max(1, len(lr) // 5)]) / eta0)
            end.append(lr[-1] / max(lr) if max(lr) > 0 else 0.0)
        aggressive = combine([compare([p - 1 for p in peak])["sign"],
                              compare([0.5 - e for e in end])["sign"]])
        out[name] = {"best_fixed": best_fixed, "marthe": mean("marthe"), "par": par,
                     # undecidable with one seed
                     "v_par": UNDECIDED if par["n"] < 2 else (FAILS if worse else HOLDS),
                     "beats": beats, "v_beats": combine(c["sign"] for c in beats.values()),
                     "peak": peak, "end": end, "v_aggressive": aggressive}
    return out
