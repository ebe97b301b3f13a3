"""A population of N MARTHE runs as one vmap-ed computation vs the same N runs one after
another; and two single-thread worker processes vs one two-thread process.

The MNIST task of the experiments (mnist_split: 7000/700 images; batch 100 for the training
and the validation minibatch), float32, SGD, MARTHE with adaptive μ and κ. Member i has its own
initial weights (seed i), minibatch order and validation batches. Quick scale is the MLP
784-100-100-10, paper scale 784-500-500-500-10. Times are best of ``--repeat`` interleaved
rounds and every ratio comes from one run. On the CPU both 1 thread and the default thread
count are measured: on a shared 2-core machine two-thread timings of these small models are
dominated by OpenMP stalls (serial runs measured 0.9 s at 1 thread and 6.5 s at 2 threads),
which is also why two single-thread worker processes beat one two-thread process.

    python -m benchmarks.bench_population [--device cpu] [--n 8] [--steps 20] [--repeat 3]

Measured (shared 2-core machine, load 4-5 from a niced background run, ``--steps 20 --repeat
5 --processes 0``), after ``run_population`` stopped applying ``where`` to the whole carry on
the CPU while every member is alive (before that: quick 0.78, paper 1.36 at 1 thread):
quick, 1 thread: serial 1.229 s, population 0.868 s, ratio 0.707; paper (5 steps), 1 thread:
2.042 s vs 2.297 s, ratio 1.125 (memory-bound elementwise work on 8 members' weights);
quick, 2 threads: 5.320 s vs 3.402 s, 0.640; paper, 2 threads: 4.164 s vs 3.012 s, 0.723
(two-thread times are dominated by OpenMP stalls under load and vary several-fold).
"""

from __future__ import annotations

import os
import time

import torch

import hypergrad as hg
from benchmarks.common import concurrent_processes, header, parse
from hypergrad.models import MLP, functional, module_loss
from hypergrad.population import run_population
from hypergrad.profiling import time_interleaved

QUICK, PAPER = (784, 100, 100, 10), (784, 500, 500, 500, 10)


def task(sizes, n: int, steps: int, batch: int = 100, device: str = "cpu"):
    """``(dyn, loss, params (N dicts), batches, vals)``: member i's minibatches and validation
    batches as ``(N, batch, ...)`` tensors per step."""
    if os.environ.get("HYPERGRAD_DATA"):
        from hypergrad.data import mnist_split

        d = mnist_split(n_train=7000, n_val=700, seed=0)
        (x, y), (xv, yv) = d["train"], d["val"]
    else:
        x, y = torch.randn(7000, 784), torch.randint(0, 10, (7000,))
        xv, yv = torch.randn(700, 784), torch.randint(0, 10, (700,))
    params, idx, vidx = [], [], []
    for i in range(n):
        torch.manual_seed(i)
        params.append({k: v.to(device) for k, v in functional(MLP(sizes))[0].items()})
        g = torch.Generator().manual_seed(1000 + i)
        idx.append(torch.randperm(len(x), generator=g)[:steps * batch].view(steps, batch))
        vidx.append(torch.randint(0, len(xv), (steps, batch), generator=g))
    idx, vidx = torch.stack(idx, 1), torch.stack(vidx, 1)       # (steps, N, batch)
    batches = [(x[idx[t]].to(device), y[idx[t]].to(device)) for t in range(steps)]
    vals = [(xv[vidx[t]].to(device), yv[vidx[t]].to(device)) for t in range(steps)]
    loss = module_loss(MLP(sizes).to(device))
    return hg.sgd(loss), loss, params, batches, vals


HP = dict(lr=0.05, beta=1e-4, mu="auto", kappa=1e-5)


def serial(dyn, loss, params, batches, vals, members=None):
    for i in members if members is not None else range(len(params)):
        hg.run_online(hg.Marthe(dyn, **HP), params[i], [(a[i], b[i]) for a, b in batches],
                      [lambda p, v=(a[i], b[i]): loss(p, v) for a, b in vals], check_every=None)


def population(dyn, loss, params, batches, vals):
    return run_population(dyn, params, batches, loss, vals, **HP)


def _worker(sizes, n, steps, threads, members, ready, go, out):
    torch.set_num_threads(threads)
    args = task(sizes, n, steps)
    serial(*args, members=members[:1])          # warm-up
    ready.set()
    go.wait()
    t0 = time.perf_counter()
    serial(*args, members=members)
    out.put(time.perf_counter() - t0)


def processes(sizes, n, steps, layout):
    """Wall time of the N serial runs split over processes: ``layout`` = [(threads, members)]."""
    return concurrent_processes(_worker, [(sizes, n, steps, threads, members)
                                          for threads, members in layout])


def main():
    a = parse(__doc__.splitlines()[0], n=8, steps=20, paper_steps=5, processes=1)
    header("population vs serial", a.device)
    threads = sorted({1, torch.get_num_threads()}) if a.device == "cpu" else [torch.get_num_threads()]
    for nt in threads:
        torch.set_num_threads(nt)
        for name, sizes, steps in (("quick 784-100-100-10", QUICK, a.steps),
                                   ("paper 784-500-500-500-10", PAPER, a.paper_steps)):
            args = task(sizes, a.n, steps, device=a.device)
            t = time_interleaved({"serial": lambda args=args: serial(*args),
                                  "population": lambda args=args: population(*args)},
                                 repeat=a.repeat, device=a.device)
            print(f"{name}, {nt} thread(s): {a.n} MARTHE runs x {steps} steps: serial "
                  f"{t['serial']:.3f} s, population {t['population']:.3f} s, ratio "
                  f"population/serial = {t['population'] / t['serial']:.3f}")
    if a.processes and a.device == "cpu":
        half = a.n // 2
        two = min(processes(QUICK, a.n, a.steps, [(1, list(range(half))), (1, list(range(half, a.n)))])
                  for _ in range(a.repeat))
        one = min(processes(QUICK, a.n, a.steps, [(2, list(range(a.n)))]) for _ in range(a.repeat))
        print(f"quick, {a.n} serial runs: 2 processes x 1 thread {two:.3f} s, 1 process x 2 threads "
              f"{one:.3f} s, ratio (2x1)/(1x2) = {two / one:.3f}")


if __name__ == "__main__":
    main()
