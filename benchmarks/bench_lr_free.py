"""One training step of every method of chapter 12 (``hypergrad.experiments.lr_free``) against
one plain SGD step, on the task of ``--experiment``: ``lr-free``, Section 5's MLP
(784-500-500-500-10), or ``lr-free-cnn``, the small CNN with momentum; batch 100, float32.

Every method runs K steps from the same initial weights on the same minibatches (after a few
warm-up steps, so that the learning-rate-free optimizers' state is built); times per step are
the best of ``--repeat`` interleaved rounds, and every ratio comes from the same run. The
tuned methods run at the middle value of their paper-scale grid (their cost does not depend
on it), the learning-rate-free ones at their defaults.

    python -m benchmarks.bench_lr_free [--experiment lr-free] [--device cpu] [--steps 10]
                                       [--repeat 5] [--out FILE]

Chapter 12 reads ``benchmarks/results/bench_lr_free_cpu.json`` (the MLP) and
``bench_lr_free_cnn_cpu.json`` (the CNN) for its cost column and its equal-time reading.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from benchmarks.common import header, parse
from hypergrad import experiments as ex
from hypergrad.dynamics import DivergenceError
from hypergrad.experiments import lr_free
from hypergrad.profiling import time_interleaved


def main():
    args = parse(__doc__.splitlines()[0], steps=10, out="", experiment="lr-free")
    dev, K = args.device, args.steps
    s = ex.settings(args.experiment, "paper")
    model = ("CNN (SmallCNN, width 8, no BatchNorm), momentum 0.9" if s.get("model") == "cnn"
             else "MLP 784-500-500-500-10")
    header(f"chapter 12's optimizers on the MNIST {model}, batch 100, {K} steps per timing",
           dev)
    task = lr_free.LrFreeTask(dict(s, T=K + 3), dev)
    batches = task.batches(0)
    warm, run = batches[:3], batches[3:]
    xv, yv = task.val_batches(0)[0]              # a validation minibatch for E
    base = task.module(0)
    fns, errors, diverged = {}, lr_free.package_errors(), set()
    for m in lr_free.METHODS:
        if errors.get(m):
            continue
        net = copy.deepcopy(base)
        grid = s["grids"].get(m)
        value = grid[len(grid) // 2] if grid else None
        opt = lr_free.make_optimizer(
            m, net, value, s, lambda net=net: F.cross_entropy(net(xv), yv))
        if m in ("sf-sgd", "sf-adamw"):
            opt.train()
        # what a step of the runs does besides the optimizer: the cosine schedule, DoG's average
        sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=s["T"])
                 if m == "cosine" else None)
        avg = None
        if m == "dog":
            from dog import PolynomialDecayAverager
            avg = PolynomialDecayAverager(net, gamma=s["defaults"]["dog"]["averager_gamma"])
        for x, y in warm:
            lr_free.one_step(m, opt, net, x, y, 0, sched, avg)

        def go(m=m, opt=opt, net=net, sched=sched, avg=avg):
            for x, y in run:     # the rounds go on training: a run that diverges is timed on
                try:             # (its steps cost what finite ones do), and recorded
                    lr_free.one_step(m, opt, net, x, y, 0, sched, avg)
                except DivergenceError:
                    diverged.add(m)
        fns[m] = go
    times = {k: v / K for k, v in time_interleaved(fns, repeat=args.repeat, device=dev).items()}
    sgd = times["fixed"]
    for m, t in times.items():
        print(f"{m:16s} {1e3 * t:8.2f} ms/step   x SGD {t / sgd:5.2f}"
              + ("   (diverged while timed: not reported)" if m in diverged else ""))
    if args.out:
        from hypergrad.io import atomic_write_json, run_metadata

        atomic_write_json(args.out, {
            "meta": run_metadata(), "device": dev, "steps": K, "repeat": args.repeat,
            "experiment": args.experiment, "model": f"{model}, batch 100, float32",
            "ms_per_step": {k: 1e3 * t for k, t in times.items()},
            # a run that diverged while timed stopped doing the work of a step: no ratio
            "ratio_to_sgd": {k: t / sgd for k, t in times.items() if k not in diverged},
            "errors": {k: v for k, v in errors.items() if v},
            "diverged_while_timed": sorted(diverged),
        })


if __name__ == "__main__":
    main()
