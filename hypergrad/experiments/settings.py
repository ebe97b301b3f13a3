"""The settings of Part II's experiments at each scale (``tiny``, ``quick``, ``paper``) and the methods' display names."""

from __future__ import annotations

import copy

__all__ = ['EXPERIMENTS', 'SCALES', 'LABELS', 'label', 'settings']


EXPERIMENTS = ("mnist-schedules", "mnist-protocol", "real-world", "sensitivity", "per-layer",
               "lr-free", "lr-free-cnn", "lr-free-cifar")


SCALES = ("tiny", "quick", "paper")


#: Display names of the methods, used by the chapters and the figures.
LABELS = {
    "fixed": "fixed η", "lrs-opt": "LRS-OPT", "hd": "HD", "rtho": "RTHO",
    "marthe-auto-mu": "MARTHE (adaptive μ)", "marthe": "MARTHE (adaptive μ and β)",
    "marthe-authors": "MARTHE (adaptive μ and β, the authors' protocol)",
    "marthe-authors-noclip": "MARTHE (the authors' protocol, Δ not clipped)",
    "exponential": "exponential decay", "staircase": "staircase", "sgdr": "SGDR",
    "marthe-one-eta": "MARTHE, one η", "marthe-per-layer": "MARTHE, one η per layer",
    "cosine": "cosine schedule", "prodigy": "Prodigy", "sf-sgd": "Schedule-Free SGD",
    "sf-adamw": "Schedule-Free AdamW", "dadapt-sgd": "D-Adaptation (SGD)", "dog": "DoG",
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
        # the paper: 4 seeds, 5000 iterations of projected gradient descent (step 0.2), which
        # costs ~47 h on 2 CPU cores at T = 500; the book runs projected Adam, which reaches
        # PGD's 1000-iteration loss in 16 iterations at quick scale (benchmarks/bench_lrs_opt),
        # for 150 iterations. The paper's setting stays available: --set
        # lrs_opt.optimizer='"pgd"' --set lrs_opt.step_size=0.2 --set lrs_opt.iterations=5000
        "lrs_opt": {"seeds": list(range(4)), "iterations": 150, "step_size": 0.03,
                    "optimizer": "adam",    # [choice]
                    "max_lr": 0.3},         # the cap stops single-step spikes      [choice]
        "quality": {"seeds": [0], "beta": "best", "replay_mus": [0.0, 0.5, 0.9, 0.99, 1.0, "auto"]},
        # how noisy LRS-OPT's hypergradient is: `draws` fresh minibatch draws (ones LRS-OPT
        # did not see) at its start and final schedule of each seed, and the final one's
        # centred mean over `window` steps (T/20) against it                      [choice]
        "noise": {"seeds": [0], "draws": 16, "window": 25},
    }
    if scale == "paper":
        return paper
    quick = copy.deepcopy(paper)
    quick.update(scale="quick", sizes=[784, 100, 100, 10], T=100)
    quick["online"].update(seeds=[0, 1], betas=[1e-4, 1e-3, 1e-2], fixed_mus=[0.9])
    quick["lrs_opt"].update(seeds=[0, 1], iterations=40, step_size=0.2, optimizer="pgd")
    quick["quality"].update(replay_mus=[0.0, 0.9, 0.99, 1.0, "auto"])
    quick["noise"].update(window=5)
    if scale == "quick":
        return quick
    tiny = copy.deepcopy(quick)
    tiny.update(scale="tiny", n_train=400, n_val=100, sizes=[784, 16, 10], batch_size=50, T=8)
    tiny["online"].update(seeds=[0], betas=[1e-3], fixed_mus=[0.9])
    tiny["lrs_opt"].update(seeds=[0], iterations=2)
    tiny["quality"].update(replay_mus=[0.0, "auto"])
    tiny["noise"].update(draws=3, window=3)
    return tiny


def _mnist_protocol_settings(scale: str) -> dict:
    """Section 5's task with the book's choices varied one at a time (see
    :mod:`hypergrad.experiments.protocol`)."""
    sec5 = _mnist_schedules_settings(scale)
    task = {k: sec5[k] for k in ("n_train", "n_val", "data_seed", "sizes", "batch_size", "T",
                                 "max_loss_ratio", "lr0")}
    paper = {
        "experiment": "mnist-protocol", "scale": "paper", **task,
        "seeds": list(range(20)),
        # the order of the sweep: the authors' protocol with the release's clip first, the
        # book's grid completed, then the unclipped protocol and the other choices, then the
        # LRS-OPT reference (added later: appended, so that the units before keep their order)
        "families": ["authors-clip100", "extend", "extend-marthe", "mu0.999", "authors-noclip",
                     "eta0", "valbatch", "lrs-adam", "lrs-pgd", "lrs-heldout"],
        # MARTHE as the authors' TensorFlow release runs it (lucfra/Marthe-TF at 0fe55287,
        # marthe/marthe_alg.py): β_0 = 1e-8 (l. 85); the user sets κ, the release's `beta`
        # ("the only real parameter to set", good values "between [1.e-15 and 1.e-6]",
        # l. 56-57; its MNIST example uses 1e-8 for a fully connected net starting at η_0 = 0,
        # marthe/mnist_example.py l. 39-43); Δ_t clipped at ±100 (`clip_value=100.`, l. 98,
        # applied at l. 150). Its β update multiplies Δ_{t-1}Δ_{t-2} (l. 191-203), one step
        # behind the rule here (Δ_t Δ_{t-1}): a departure the book states.
        "authors": {"beta0": 1e-8,
                    "kappas": [1e-12, 1e-11, 1e-10, 3e-10, 1e-9, 3e-9, 1e-8, 3e-8, 1e-7, 1e-6,
                               1e-5],
                    # without the clip: the best κ with its neighbours and the top of the
                    # grid, where the decimation procedure reads its κ (the clip binds on a few
                    # steps there: 3 steps of 500 have |Δ_t| > 100 at κ = 3e-9, seed 0) [choice]
                    "noclip_kappas": [1e-9, 3e-9, 1e-8, 1e-7, 1e-6, 1e-5]},
        # Section 5's β grid extended past the edge where a method's best β lies there
        "extend": {"hd": [3e-2, 1e-1], "marthe-mu0.5": [3e-2, 1e-1]},
        # … and the book's reading of adaptive β (best β_0 = 1e-5, the grid's lower edge)
        "extend-marthe": {"betas": [3e-6, 1e-6], "kappa_start": 1e-1},
        # the authors' MNIST grid has μ = 0.999 (marthe/mnist_comparison.py at 768916d3,
        # l. 190-192: lr0=0., mu=[0., 0.5, 0.9, 0.999, 1.], a fixed β in 1e-6 … 1e-3)
        "mu0.999": {"betas": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2]},
        # each method's best β at η_0 = 0 (Section 5, 20 seeds) and its two grid neighbours
        # η_0 and the validation minibatch on the first 10 seeds (paired with Section 5's runs
        # of the same seeds): the budget of issue 21 is ~600 new online units      [choice]
        "eta0": {"lr0": 0.1, "seeds": list(range(10)), "betas": {
            "hd": [3e-3, 1e-2, 3e-2], "rtho": [1e-5, 3e-5, 1e-4],
            "marthe-mu0.5": [3e-3, 1e-2, 3e-2], "marthe-mu0.9": [1e-4, 3e-4, 1e-3],
            "marthe-mu0.99": [3e-5, 1e-4, 3e-4], "marthe-auto-mu": [1e-4, 3e-4, 1e-3]}},
        # E on a validation minibatch of the training batch's size, drawn at every step, as
        # the release's validation supplier does (mnist_comparison.py l. 129 and 146-147:
        # a validation minibatch of `bs`, the training batch size)
        "valbatch": {"size": 100, "seeds": list(range(10)), "betas": {
            "hd": [3e-3, 1e-2, 3e-2], "rtho": [1e-5, 3e-5, 1e-4],
            "marthe-mu0.5": [3e-3, 1e-2, 3e-2], "marthe-mu0.9": [1e-4, 3e-4, 1e-3],
            "marthe-mu0.99": [3e-5, 1e-4, 3e-4], "marthe-auto-mu": [1e-4, 3e-4, 1e-3]}},
        # An LRS-OPT reference that is shown to converge (issue 21, item 2): per seed, from
        # η_t = 0.1, projected Adam with Section 5's step (0.03) and NO cap, for 500
        # iterations, the mean of the last half of the iterates (Polyak–Ruppert) beside the
        # last one, both recorded every 25 iterations and evaluated on `draws` fixed held-out
        # draws of minibatches; seed 0 also by the paper's plain projected gradient descent
        # (step 0.2, Section 5's paper setting) for as many iterations. One iteration took
        # 14-22 s on one CPU thread at T = 500 (Section 5's LRS-OPT units): 2-3 h per run,
        # ~20 min per held-out trace                                               [choice]
        "lrs_ref": {"seeds": [0, 1, 2, 3], "pgd_seeds": [0], "init": 0.1,
                    "step_size": {"adam": 0.03, "pgd": 0.2}, "max_lr": None,
                    "iterations": 500, "average_from": 250, "snapshot_every": 25,
                    "draws": 8},
    }
    if scale == "paper":
        return paper
    small = {"hd": [1e-3, 1e-2], "marthe-mu0.99": [1e-4, 1e-3]}
    quick = copy.deepcopy(paper)
    quick.update(scale="quick", **task, seeds=[0, 1])
    quick["authors"].update(kappas=[1e-9, 1e-7, 1e-5, 1e-3], noclip_kappas=[1e-9, 1e-5])
    quick["eta0"]["seeds"] = quick["valbatch"]["seeds"] = [0, 1]
    quick["extend"] = {"hd": [3e-2]}
    quick["extend-marthe"]["betas"] = [1e-5]
    quick["mu0.999"]["betas"] = [1e-4, 1e-3]
    quick["eta0"]["betas"] = copy.deepcopy(small)
    quick["valbatch"]["betas"] = copy.deepcopy(small)
    quick["lrs_ref"].update(seeds=[0, 1], iterations=12, average_from=4, snapshot_every=4,
                            draws=4)
    if scale == "quick":
        return quick
    tiny = copy.deepcopy(quick)
    tiny.update(scale="tiny", **task, seeds=[0])
    tiny["authors"].update(kappas=[1e-9, 1e-5], noclip_kappas=[1e-5])
    tiny["eta0"]["seeds"] = tiny["valbatch"]["seeds"] = [0]
    tiny["mu0.999"]["betas"] = [1e-3]
    tiny["extend-marthe"]["betas"] = [1e-3]
    tiny["eta0"]["betas"] = {"hd": [1e-2]}
    tiny["valbatch"].update(size=20, betas={"marthe-mu0.99": [1e-3]})
    # every iteration a snapshot, so that the average can be checked against them
    tiny["lrs_ref"].update(seeds=[0], iterations=4, average_from=2, snapshot_every=1,
                           draws=3)
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
    quick.update(scale="quick", sizes=[784, 100, 100, 10], T=100, seeds=[0, 1],
                 betas=[1e-4, 3e-4, 1e-3, 3e-3, 1e-2], mus=[0.0, 0.5, 0.9, 0.99, 1.0, "auto"])
    if scale == "quick":
        return quick
    tiny = copy.deepcopy(quick)
    tiny.update(scale="tiny", n_train=400, n_val=100, sizes=[784, 16, 10], batch_size=50, T=6,
                betas=[1e-3, 1e-2], mus=[0.0, "auto"])
    return tiny


def _per_layer_settings(scale: str) -> dict:
    paper = {
        "experiment": "per-layer", "scale": "paper", **_MNIST_PAPER_TASK,
        "max_loss_ratio": 10.0,
        "lr0": 0.1,                 # η_0 of every group: the fixed-η baseline's      [choice]
        "mu": 0.9,                  # μ fixed, the same for both online variants      [choice]
        "fixed_lrs": [0.03, 0.1, 0.3, 1.0],
        "betas": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
        "select_seeds": [100, 101, 102],   # values chosen here ...
        "seeds": list(range(10)),          # ... and compared here                  [choice]
    }
    if scale == "paper":
        return paper
    quick = copy.deepcopy(paper)
    quick.update(scale="quick", sizes=[784, 100, 100, 10], T=100, betas=[1e-4, 1e-3, 1e-2, 1e-1],
                 select_seeds=[100, 101], seeds=list(range(5)))
    if scale == "quick":
        return quick
    tiny = copy.deepcopy(quick)
    tiny.update(scale="tiny", n_train=400, n_val=100, sizes=[784, 16, 10], batch_size=50, T=6,
                fixed_lrs=[0.1], betas=[1e-3, 1e-2], select_seeds=[100], seeds=[0, 1])
    return tiny


def _lr_free_settings(scale: str) -> dict:
    """Section 5's MNIST task for the hypergradient methods against the learning-rate-free
    optimizers (:mod:`hypergrad.experiments.lr_free`)."""
    paper = {
        "experiment": "lr-free", "scale": "paper", **_MNIST_PAPER_TASK,
        "unit_prefix": "lr_free",   # unit files: <prefix>_<method>_<value>_seed<seed>
        "max_loss_ratio": 10.0,
        # the accuracy every 25 steps (validation set, first 2,000 test images): the
        # curves that equal wall-clock time is read from                       [choice]
        "checkpoint_every": 25, "checkpoint_test": 2000,
        "lr0": 0.0,                 # η_0 of the hypergradient methods: Section 5's
        "val_batch_size": 100,      # E on a validation minibatch, one drawn per step [choice]
        # three values for every tuned method: η of the fixed and cosine baselines, β of
        # the hypergradient ones (Section 5's best β at η_0 = 0 and its two neighbours)
        # (four since the first paper-scale round: there, fixed η and cosine chose 0.3 and
        # RTHO 1e-4, the edges of three-value grids; each grid then got a fourth value,
        # beyond the edge chosen, or for an interior choice on the side of its better
        # neighbour)                                                             [choice]
        "grids": {"fixed": [0.03, 0.1, 0.3, 1.0], "cosine": [0.03, 0.1, 0.3, 1.0],
                  "hd": [1e-3, 3e-3, 1e-2, 3e-2], "rtho": [1e-5, 3e-5, 1e-4, 3e-4],
                  "marthe-mu0.9": [1e-4, 3e-4, 1e-3, 3e-3],
                  "marthe-auto-mu": [3e-5, 1e-4, 3e-4, 1e-3],
                  # MARTHE with adaptive μ and β: its β_0 on adaptive μ's grid, κ chosen
                  # per run by Section 4's rule (0.1, divided by 10 until the run does not
                  # diverge), as in Part II                                      [choice]
                  "marthe": [3e-5, 1e-4, 3e-4, 1e-3]},
        "kappa_start": 0.1, "kappa_tries": 5,
        # the learning-rate-free optimizers at their authors' defaults (the constructors'
        # defaults, written out so that a unit records them)
        "defaults": {
            "prodigy": {"lr": 1.0, "betas": [0.9, 0.999], "weight_decay": 0.0, "d0": 1e-6,
                        "d_coef": 1.0},
            "sf-sgd": {"lr": 1.0, "momentum": 0.9, "weight_decay": 0.0, "warmup_steps": 0},
            "sf-adamw": {"lr": 0.0025, "betas": [0.9, 0.999], "weight_decay": 0.0,
                         "warmup_steps": 0},
            "dadapt-sgd": {"lr": 1.0, "momentum": 0.0, "weight_decay": 0.0, "d0": 1e-6},
            "dog": {"lr": 1.0, "reps_rel": 1e-6, "weight_decay": 0.0, "averager_gamma": 8.0},
        },
        "select_seeds": [100, 101, 102],   # values chosen here ...
        "seeds": list(range(10)),          # ... and compared here                  [choice]
    }
    if scale == "paper":
        return paper
    quick = copy.deepcopy(paper)
    quick.update(scale="quick", sizes=[784, 100, 100, 10], T=100, checkpoint_every=10,
                 checkpoint_test=1000, select_seeds=[100, 101], seeds=list(range(5)))
    # a horizon of 100 steps wants larger β than Section 5's 500: the β grids move up by a
    # decade (three values, half a decade apart)                                  [choice]
    quick["grids"] = {"fixed": [0.03, 0.1, 0.3], "cosine": [0.03, 0.1, 0.3],
                      "hd": [1e-2, 3e-2, 1e-1], "rtho": [1e-4, 3e-4, 1e-3],
                      "marthe-mu0.9": [1e-3, 3e-3, 1e-2], "marthe-auto-mu": [1e-3, 3e-3, 1e-2],
                      "marthe": [1e-3, 3e-3, 1e-2]}
    if scale == "quick":
        return quick
    tiny = copy.deepcopy(quick)
    tiny.update(scale="tiny", n_train=400, n_val=100, sizes=[784, 16, 10], batch_size=50, T=6,
                val_batch_size=50, checkpoint_every=2, checkpoint_test=500,
                select_seeds=[100], seeds=[0, 1])
    tiny["grids"] = {m: v[1:] for m, v in tiny["grids"].items()}
    return tiny


def _lr_free_cnn_settings(scale: str) -> dict:
    """The same comparison on a small convolutional network trained with momentum
    (:mod:`hypergrad.experiments.lr_free`, experiment ``lr-free-cnn``)."""
    s = _lr_free_settings(scale)
    del s["sizes"]
    s.update(experiment="lr-free-cnn", unit_prefix="lr_free_cnn",
             model="cnn",               # SmallCNN: 3x3 convolutions of 8 and 16 channels,
             width=8,                   # 2x2 max-pooling, a linear layer, no BatchNorm [choice]
             momentum=0.9)              # heavy ball, for the baselines and the hypergradient
    # methods; the learning-rate-free optimizers keep their defaults            [choice]
    # Four values each, half a decade apart. With momentum 0.9 a step moves about ten times
    # as far and the tangent Z_t grows with it: a 100-step trial on one selection seed put
    # the best η near 0.03 and the best β two to three decades below Section 5's [choice]
    s["grids"] = {"fixed": [0.01, 0.03, 0.1, 0.3], "cosine": [0.01, 0.03, 0.1, 0.3],
                  "hd": [1e-5, 3e-5, 1e-4, 3e-4], "rtho": [1e-7, 3e-7, 1e-6, 3e-6],
                  "marthe-mu0.9": [1e-6, 3e-6, 1e-5, 3e-5],
                  "marthe-auto-mu": [3e-6, 1e-5, 3e-5, 1e-4],
                  "marthe": [3e-6, 1e-5, 3e-5, 1e-4]}
    if scale == "paper":
        return s
    s["grids"] = {m: g[1:] for m, g in s["grids"].items()}    # three values
    s.update(width=4, select_seeds=[100], seeds=[0, 1, 2])
    if scale == "quick":
        # a narrower network on smaller minibatches over 60 steps, one selection seed and
        # three reported ones: the quick scale's budget                          [choice]
        s.update(batch_size=50, val_batch_size=50, T=60, checkpoint_every=20,
                 checkpoint_test=500)
        return s
    s["grids"] = {m: g[1:] for m, g in s["grids"].items()}    # tiny: two values
    return s


def _lr_free_cifar_settings(scale: str) -> dict:
    """The comparison on CIFAR-10 with VGG-11-BN and momentum (experiment ``lr-free-cifar``),
    for a GPU and the CIFAR files (:func:`hypergrad.data.cifar_split`): the paper's Section 6
    network and minibatch, over 2,000 steps (about six epochs; the minibatches of a run are
    drawn up front, about 3 GB of a GPU's memory each for training and validation)."""
    s = _lr_free_cnn_settings(scale)
    s.pop("n_train")
    s.update(experiment="lr-free-cifar", unit_prefix="lr_free_cifar", dataset="cifar10",
             model="vgg11_bn", width=64, n_val=5000, batch_size=128, val_batch_size=128,
             T=2000, checkpoint_every=100, checkpoint_test=2000)                 # [choice]
    if scale == "quick":
        s.update(width=16, T=200, checkpoint_every=20)
    elif scale == "tiny":
        s.update(width=4, n_val=100, batch_size=8, val_batch_size=8, T=4, checkpoint_every=2,
                 checkpoint_test=50)
    return s


def settings(experiment: str, scale: str = "quick") -> dict:
    """The settings of ``experiment`` at ``scale`` (a fresh dict: change it freely).

    ``"paper"`` follows Section 5/6 and Appendix C where the paper gives a value; elsewhere
    the value is a stated choice of the book (marked ``[choice]``).
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    makers = {"mnist-schedules": _mnist_schedules_settings,
              "mnist-protocol": _mnist_protocol_settings, "real-world": _real_world_settings,
              "sensitivity": _sensitivity_settings, "per-layer": _per_layer_settings,
              "lr-free": _lr_free_settings, "lr-free-cnn": _lr_free_cnn_settings,
              "lr-free-cifar": _lr_free_cifar_settings}
    if experiment not in makers:
        raise ValueError(f"experiment must be one of {EXPERIMENTS}, got {experiment!r}")
    return makers[experiment](scale)
