"""Hypergradient learning rates against the learning-rate-free optimizers practitioners use,
on Section 5's MNIST task.

The hypergradient methods (HD, RTHO, MARTHE with μ = 0.9 and with adaptive μ) run through the
project's drop-in optimizers (:mod:`hypergrad.optim`), ``E`` the loss on a validation
minibatch drawn at every step. The learning-rate-free optimizers are the real packages, at
their authors' defaults: Prodigy (``prodigyopt``), Schedule-Free SGD and AdamW
(``schedulefree``, switched with ``optimizer.eval()`` before evaluation), D-Adaptation
(``dadaptation.DAdaptSGD``) and DoG (``dog``, evaluated on its polynomial-decay weight
average). Two tuned baselines complete them: a fixed η and a cosine schedule.

Two tasks: Section 5's multilayer perceptron with plain SGD (experiment ``lr-free``) and a
small convolutional network with heavy-ball momentum 0.9 (experiment ``lr-free-cnn``: the
tuned baselines and the hypergradient methods step with momentum; the learning-rate-free
optimizers keep their own defaults). Every method starts from the same weights and sees the
same minibatches on a seed. The tuned
methods (η of the fixed and cosine baselines, β of the hypergradient ones) get grids of the
same size; each value is chosen on the selection seeds by mean validation accuracy, and every
method is reported on the other seeds. The learning-rate-free methods are not tuned. Each run
records the effective step size of every step, read from the optimizer (``param_groups`` and
its state), the validation and test accuracy every ``checkpoint_every`` steps (so that
methods can be compared at equal wall-clock time, :func:`equal_time`), and the wall time of
a step (the evaluations excluded). Each run is one unit (resumable, committed like Part II's).
"""

from __future__ import annotations

import math
import os
import time
import weakref

import torch
import torch.nn.functional as F

from hypergrad.dynamics import DivergenceError
from hypergrad.experiments.stats import paired
from hypergrad.experiments.store import UnitStore, _seed_key, float32_trace, select_kappa

__all__ = ["LrFreeTask", "one_step", "count_passes", "equal_time", "HORIZON", "TUNED", "LR_FREE", "METHODS", "HYPER", "PACKAGES", "uses_validation",
           "make_optimizer", "train_run", "run_lr_free", "package_errors"]

#: the tuned methods, the baselines (η) and the hypergradient methods (β)
TUNED = ("fixed", "cosine", "hd", "rtho", "marthe-mu0.9", "marthe-auto-mu", "marthe")
#: the learning-rate-free optimizers, run at their authors' defaults
LR_FREE = ("prodigy", "sf-sgd", "sf-adamw", "dadapt-sgd", "dog")
METHODS = TUNED + LR_FREE
#: the methods whose schedule is planned for the horizon ``T`` (read at ``T`` in SGD's time)
HORIZON = ("cosine",)
#: the methods that read the validation set while training
HYPER = ("hd", "rtho", "marthe-mu0.9", "marthe-auto-mu", "marthe")
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


class LrFreeTask:
    """The task of settings ``s``: the data split (MNIST by
    :func:`hypergrad.data.mnist_split`, or with ``s["dataset"]`` ``"cifar10"``/``"cifar100"``
    by :func:`hypergrad.data.cifar_split`), the network of a seed (:meth:`module`: the MLP of
    ``s["sizes"]``; with ``s["model"] == "cnn"`` a :class:`~hypergrad.models.SmallCNN` of
    ``s["width"]`` channels without BatchNorm; with ``"vgg11_bn"``
    :func:`~hypergrad.models.vgg11_bn` of that width), the ``T`` training minibatches of a
    seed and its ``T`` validation minibatches (another stream), and the evaluation of a
    network."""

    def __init__(self, s: dict, device="cpu"):
        from hypergrad.data import cifar_split, mnist_split

        self.s, self.device = s, torch.device(device)
        dataset = s.get("dataset", "mnist")
        if dataset == "mnist":
            self.data = mnist_split(s["n_train"], s["n_val"], seed=s["data_seed"],
                                    device=self.device)
        elif dataset in ("cifar10", "cifar100"):
            self.data = cifar_split(dataset, n_val=s["n_val"], seed=s["data_seed"],
                                    device=self.device)
        else:
            raise ValueError(f"dataset must be 'mnist', 'cifar10' or 'cifar100', got "
                             f"{dataset!r}")

    def module(self, seed: int) -> torch.nn.Module:
        """A fresh network holding the seed's initial weights ``w_0`` (the same for every
        method; for the MLP, the weights Part II's runs of that seed start from)."""
        from hypergrad.models import MLP, SmallCNN, vgg11_bn

        torch.manual_seed(seed)
        model = self.s.get("model", "mlp")
        if model == "cnn":
            return SmallCNN(width=self.s["width"], batchnorm=False).to(self.device)
        if model == "vgg11_bn":
            classes = 100 if self.s.get("dataset") == "cifar100" else 10
            return vgg11_bn(num_classes=classes, width=self.s["width"]).to(self.device)
        return MLP(tuple(self.s["sizes"])).to(self.device)

    def batches(self, seed: int) -> list:
        """The ``T`` training minibatches of ``seed``."""
        from hypergrad.data import sample_batches

        return sample_batches(self.data["train"], self.s["batch_size"], self.s["T"],
                              seed=_seed_key(seed, 0))

    def val_batches(self, seed: int) -> list:
        """The ``T`` validation minibatches of ``seed`` (``E`` of step ``t`` is the loss on
        the ``t``-th)."""
        from hypergrad.data import sample_batches

        return sample_batches(self.data["val"], self.s["val_batch_size"], self.s["T"],
                              seed=_seed_key(seed, _VAL_SALT))

    @torch.no_grad()
    def evaluate(self, net: torch.nn.Module, test_limit: int | None = None) -> dict:
        """The validation loss and accuracy on the whole validation set, and the test accuracy
        (on the first ``test_limit`` test images, or all), with ``net`` in evaluation mode
        (:func:`hypergrad.models.evaluate`, a thousand images at a time). A validation set
        of at most a thousand images is read in one pass, its loss and accuracy as float32
        means (the numbers of the committed units)."""
        from hypergrad.models import evaluate

        xv, yv = self.data["val"]
        if len(xv) <= 1000:
            was = net.training
            net.eval()
            try:
                logits = net(xv)
            finally:
                net.train(was)
            val_loss = float(F.cross_entropy(logits, yv))
            val_acc = float((logits.argmax(1) == yv).float().mean())
        else:
            ev = evaluate(net, xv, yv)
            val_loss = math.nan if ev["loss"] is None else ev["loss"]
            val_acc = ev["acc"]
        xt, yt = self.data["test"]
        n = len(xt) if test_limit is None else min(test_limit, len(xt))
        return {"val_loss": val_loss, "val_acc": val_acc,
                "test_acc": evaluate(net, xt[:n], yt[:n])["acc"]}


def make_optimizer(method: str, net: torch.nn.Module, value: float | None, s: dict,
                   val_closure=None, kappa: float | None = None) -> torch.optim.Optimizer:
    """The optimizer of ``method`` over ``net``'s parameters: ``value`` is η (``"fixed"``,
    ``"cosine"``) or β (the hypergradient methods; ``"marthe"``, with adaptive μ and β, starts
    its β there and adapts it with step size ``kappa``), both stepping with heavy-ball
    momentum ``s["momentum"]`` (0 if absent); the learning-rate-free ones take the keyword
    arguments of ``s["defaults"][method]`` (their authors' defaults)."""
    from hypergrad import optim

    params = net.parameters()
    kw = dict(s["defaults"].get(method, {}))
    momentum = s.get("momentum", 0.0)
    if method in ("fixed", "cosine"):
        return torch.optim.SGD(params, lr=value, momentum=momentum)
    if method in HYPER:
        cls = {"hd": optim.HD, "rtho": optim.RTHO}.get(method, optim.Marthe)
        mu = {"marthe-mu0.9": 0.9, "marthe-auto-mu": "auto", "marthe": "auto"}.get(method)
        extra = {} if mu is None else {"mu": mu}
        if method == "marthe":
            extra["kappa"] = kappa
        return cls(params, "sgd", lr=s["lr0"], momentum=momentum, beta=value,
                   val_closure=val_closure, **extra)
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


def _setup(task: LrFreeTask, method: str, value: float | None, seed: int,
           kappa: float | None = None):
    """The network, optimizer, cosine schedule and DoG averager of a run, the holder of the
    validation minibatch index its ``val_closure`` reads, and those minibatches."""
    s = task.s
    net = task.module(seed)
    val = task.val_batches(seed)
    vb = {"i": 0}

    def val_closure():    # E in evaluation mode: BatchNorm's running statistics are read,
        xv, yv = val[vb["i"]]                # not updated by validation minibatches
        was = net.training
        net.eval()
        try:
            return F.cross_entropy(net(xv), yv)
        finally:
            net.train(was)

    opt = make_optimizer(method, net, value, s, val_closure, kappa)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=s["T"])
             if method == "cosine" else None)
    averager = None
    if method == "dog":
        from dog import PolynomialDecayAverager
        averager = PolynomialDecayAverager(net, gamma=s["defaults"]["dog"]["averager_gamma"])
    if method in ("sf-sgd", "sf-adamw"):
        opt.train()
    return net, opt, sched, averager, vb, val


def _evaluated(task: LrFreeTask, method: str, net, opt, averager, test_limit=None) -> dict:
    """``task.evaluate`` at the point each method is evaluated at: Schedule-Free's average
    (``opt.eval()``, switched back after), DoG's polynomial-decay average, else the weights."""
    if method in ("sf-sgd", "sf-adamw"):
        opt.eval()
    try:
        return task.evaluate(averager.averaged_model if averager is not None else net,
                             test_limit)
    finally:
        if method in ("sf-sgd", "sf-adamw"):
            opt.train()


def train_run(task: LrFreeTask, method: str, value: float | None, seed: int,
              trace: dict | None = None) -> dict:
    """One run of ``method`` on ``seed``: its final validation and test accuracy, the step
    size of every step, the accuracy records (``curve``), the seconds a step took and whether
    it diverged. MARTHE with adaptive μ and β (``"marthe"``) chooses its κ as Section 4 does, per run: ``s["kappa_start"]``, divided
    by 10 until the run does not diverge (at most ``s["kappa_tries"]`` tries); its result
    gives the κ it ran with (``kappa``) and the tries (``kappa_tries``)."""
    if method != "marthe":
        return _train(task, method, value, seed, trace)
    tried = []

    def run(kappa):
        tried.append((kappa, _train(task, method, value, seed, trace, kappa)))
        return tried[-1][1]

    try:
        kappa, res = select_kappa(run, task.s["kappa_start"], task.s["kappa_tries"])
    except DivergenceError:           # every κ diverged: the last run is the result
        kappa, res = tried[-1]
    return {**res, "kappa": kappa, "kappa_tries": len(tried)}


def _train(task: LrFreeTask, method: str, value: float | None, seed: int,
           trace: dict | None = None, kappa: float | None = None) -> dict:
    """One run of ``method`` on ``seed``: final validation loss and accuracy, test accuracy,
    the first training loss, the effective step size of every step (float32), the seconds a
    step took (evaluations excluded), whether (and when) it diverged (a non-finite number, or
    a training loss above ``max_loss_ratio`` times the first), and ``curve``: the validation
    accuracy and the accuracy on the first ``checkpoint_test`` test images after every
    ``checkpoint_every`` steps (and after the last). ``trace`` (a dict), if given, receives
    the optimizer (``trace["optimizer"]``)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    s = task.s
    net, opt, sched, averager, vb, _ = _setup(task, method, value, seed, kappa)
    if trace is not None:
        trace["optimizer"] = opt
    every = s["checkpoint_every"]
    curve = {"step": [], "val_acc": [], "test_acc": []}
    lrs: list[float] = []
    first, diverged_at, wall = None, None, 0.0
    for t, (x, y) in enumerate(task.batches(seed)):
        group = opt.param_groups[0]
        before = {k: group[k] for k in ("d", "lr") if k in group}
        start = time.perf_counter()
        try:
            vb["i"] = t
            loss = one_step(method, opt, net, x, y, t, sched, averager)
        except DivergenceError as e:
            diverged_at = e.step
            break
        lrs.append(_effective(method, group, before))
        first = float(loss) if first is None else first
        wall += time.perf_counter() - start
        if not math.isfinite(lrs[-1]) or float(loss) > s["max_loss_ratio"] * first:
            diverged_at = t
            break
        if (t + 1) % every == 0 or t + 1 == s["T"]:
            ev = _evaluated(task, method, net, opt, averager, s["checkpoint_test"])
            curve["step"].append(t + 1)
            curve["val_acc"].append(ev["val_acc"])
            curve["test_acc"].append(ev["test_acc"])
    out = {"diverged": diverged_at is not None, "diverged_at": diverged_at,
           "first_loss": first, "lr": float32_trace(lrs),
           "seconds_per_step": wall / max(1, len(lrs)), "curve": curve}
    if diverged_at is None:
        ev = _evaluated(task, method, net, opt, averager)
        if math.isfinite(ev["val_loss"]):
            return {**out, **ev}
        out.update(diverged=True, diverged_at=len(lrs))
    return {**out, "val_loss": None, "val_acc": None, "test_acc": None}


class _PassCounter:
    """Counts, while inside, the network's forward passes that build a graph (on a training
    minibatch or a validation one, told apart by the input tensor) and the backward passes
    (``torch.autograd.grad`` and ``backward``): a pass that differentiates a gradient built
    with ``create_graph=True`` is a Hessian–vector product (a batched one counts each of its
    vectors), any other a gradient."""

    def __init__(self, net: torch.nn.Module, val_inputs: list[torch.Tensor]):
        self.net, self.val = net, {id(v) for v in val_inputs}
        self.counts = {"forward (train)": 0, "forward (validation)": 0, "gradients": 0,
                       "Hessian-vector products": 0}
        self._graph_grads: dict[int, weakref.ref] = {}

    def __enter__(self):
        def pre(module, args):
            if torch.is_grad_enabled():
                key = "forward (validation)" if id(args[0]) in self.val else "forward (train)"
                self.counts[key] += 1

        self._hook = self.net.register_forward_pre_hook(pre)
        self._grad, self._backward = torch.autograd.grad, torch.autograd.backward
        grad = self._grad

        def counted_grad(outputs, inputs, *args, **kw):
            outs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
            if any((ref := self._graph_grads.get(id(o))) is not None and ref() is o
                   for o in outs):
                go = kw.get("grad_outputs")
                rows = (go[0].shape[0] if kw.get("is_grads_batched") and go is not None else 1)
                self.counts["Hessian-vector products"] += rows
            else:
                self.counts["gradients"] += 1
            res = grad(outputs, inputs, *args, **kw)
            if kw.get("create_graph"):
                self._graph_grads.update((id(g), weakref.ref(g)) for g in res if g is not None)
            return res

        def counted_backward(*args, **kw):
            self.counts["gradients"] += 1
            return self._backward(*args, **kw)

        torch.autograd.grad, torch.autograd.backward = counted_grad, counted_backward
        return self

    def __exit__(self, *exc):
        torch.autograd.grad, torch.autograd.backward = self._grad, self._backward
        self._hook.remove()


def count_passes(task: LrFreeTask, method: str, value: float | None = None, seed: int = 0,
                 steps: int = 3) -> dict[str, float]:
    """The passes through the network one step of ``method`` makes, counted over ``steps``
    steps of a run and divided by ``steps``: forward passes on the training minibatch and on
    the validation minibatch, gradients (backward passes) and Hessian–vector products."""
    kappa = task.s.get("kappa_start") if method == "marthe" else None
    net, opt, sched, averager, vb, val = _setup(task, method, value, seed, kappa)
    with _PassCounter(net, [xv for xv, _ in val]) as c:
        for t, (x, y) in enumerate(task.batches(seed)[:steps]):
            vb["i"] = t
            one_step(method, opt, net, x, y, t, sched, averager)
    return {k: v / steps for k, v in c.counts.items()}


def equal_time(res: dict, cost: dict[str, float], key: str = "test_acc",
               budget: float | None = None) -> dict:
    """Every method's accuracy at the wall-clock time of the plain SGD run's ``T`` steps: a
    method whose step costs ``cost[m]`` SGD steps gets ``T / cost[m]`` steps (at most
    ``T``), and is read at the last checkpoint of its ``curve`` within them (``key``: the
    checkpoint's test accuracy on the first ``checkpoint_test`` images, or ``"val_acc"``).
    Returns ``{method: {"steps": k, "acc": paired(...)}}`` over the reported seeds, a run
    that diverged before step ``k`` (its curve stops there) counting as 0; methods without a cost are left out. Only methods with no
    horizon of their own are read fairly this way: a method of :data:`HORIZON` (the cosine
    schedule, planned for ``T`` steps) is read at ``T`` in SGD's time or more, its step
    costing SGD's and a scalar update. ``budget``: another wall time, in plain SGD steps
    (default ``T``)."""
    T = res["settings"]["T"]
    out = {}
    for m, runs in res["report"].items():
        if m not in cost:
            continue
        every = res["settings"]["checkpoint_every"]
        b = T if budget is None else budget
        mine = int(b / cost[m])
        steps = T if mine >= T or (m in HORIZON and b >= T) else mine // every * every
        accs = [r["curve"][key][r["curve"]["step"].index(steps)]
                if steps in r["curve"]["step"] else 0.0 for r in runs]
        out[m] = {"steps": steps, "acc": paired(accs)}
    return out


def _unit_settings(s: dict, method: str, value: float | None, seed: int) -> dict:
    keys = ("n_train", "n_val", "data_seed", "sizes", "model", "width", "momentum",
            "batch_size", "T", "max_loss_ratio", "val_batch_size", "checkpoint_every",
            "checkpoint_test")
    task = {k: s[k] for k in keys if k in s}
    extra = ({"lr0": s["lr0"]} if method in HYPER else
             {"defaults": s["defaults"][method]} if method in LR_FREE else {})
    if method == "marthe":
        extra.update(kappa_start=s["kappa_start"], kappa_tries=s["kappa_tries"])
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
    task = LrFreeTask(s, device)
    store = UnitStore(out_dir, readonly=readonly)
    errors = {m: e for m, e in package_errors().items() if e is not None}
    methods = [m for m in METHODS if m not in errors]
    runs: dict[str, dict] = {m: {} for m in methods}

    def get(method, value, seed):
        name = f"{s['unit_prefix']}_{method}_{_key(value)}_seed{seed}"
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
