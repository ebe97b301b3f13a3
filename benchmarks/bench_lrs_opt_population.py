"""LRS-OPT for N seeds as one batched computation (``hypergrad.lrs_opt_population``: the N
hypergradients of an iteration in one ``vmap``) vs the same N runs of ``hypergrad.lrs_opt``
one after another.

The quick-scale Section 5 task (``benchmarks.common.quick_mnist_task``, as
``hypergrad.experiments`` builds it): MNIST 7000/700, MLP 784-100-100-10, SGD, batch 100,
``T = 100``, float32, ``E`` = the loss on the 700 validation images, start ``η_t = 0.1``, PGD
step 0.2 with cap 0.3, fresh minibatches per iteration; member ``i`` is seed ``i``. Times are
best of ``--repeat`` interleaved rounds of ``--iterations`` iterations, so the ratio comes from
one run; the batched run is timed with the default segment length ``⌈√T⌉`` (as ``lrs_opt``)
and with ``checkpoint_every = T`` (the whole trajectory in one ``vjp``: one forward pass
fewer, ``T`` states kept per member).

    python -m benchmarks.bench_lrs_opt_population [--n 4] [--iterations 2] [--threads 1]

Measured (shared 2-core machine under load ~4.7, 1 thread, --repeat 3): 4 serial runs 2.42
s/iteration; batched 2.25 s/iteration with k = ⌈√T⌉ (ratio 0.93) and 1.48 s/iteration with
k = T (ratio 0.61). Forward mode was not batched: one serial forward-mode hypergradient of this
task (T = 100 tangent columns) took 16.5 s against 0.57 s in reverse mode.
"""

from __future__ import annotations

import torch

import hypergrad as hg
from benchmarks.common import header, parse, quick_mnist_task
from hypergrad.profiling import time_interleaved


def main():
    a = parse(__doc__.splitlines()[0], n=4, iterations=2, threads=1, T=100)
    torch.set_num_threads(a.threads)
    header(f"LRS-OPT, {a.n} seeds batched vs serial, quick MNIST task, T = {a.T}", a.device)
    task = quick_mnist_task(device=a.device, T=a.T)
    dyn, objective = task["dyn"], task["objective"]
    params = [task["init_params"](i) for i in range(a.n)]
    fns = [lambda it, i=i: task["batches"](i, it + 1) for i in range(a.n)]
    lrs0 = torch.full((a.T,), 0.1, device=a.device)
    kw = dict(iterations=a.iterations, step_size=0.2, max_lr=0.3)

    def serial():
        return [hg.lrs_opt(dyn, params[i], lrs0, fns[i], objective, progress=False, **kw)
                for i in range(a.n)]

    def batched(k=None):
        return hg.lrs_opt_population(dyn, params, lrs0, fns, objective, checkpoint_every=k, **kw)

    # the same schedules up to float32 rounding, which 100 steps amplify (in float64 the
    # hypergradients agree to 1e-15: tests/test_lrs_opt_population.py)
    diff = max(abs(x - y) for r, s in zip(batched(), serial(), strict=True)
               for x, y in zip(r.lrs, s.lrs, strict=True))
    print(f"largest |batched - serial| entry of the schedules after {a.iterations} iterations "
          f"(float32): {diff:.2e}")
    t = time_interleaved({"serial": serial, "batched": batched,
                          "batched_k=T": lambda: batched(a.T)}, repeat=a.repeat, warmup=0,
                         device=a.device)
    per = {k: v / a.iterations for k, v in t.items()}
    print(f"{a.n} serial runs: {per['serial']:.3f} s/iteration | batched (k = ⌈√T⌉): "
          f"{per['batched']:.3f} s/iteration | batched (k = T): {per['batched_k=T']:.3f} s/iteration")
    print(f"RATIO N={a.n} batched / {a.n} serial (per iteration): k = ⌈√T⌉ "
          f"{per['batched'] / per['serial']:.3f}, k = T {per['batched_k=T'] / per['serial']:.3f}")


if __name__ == "__main__":
    main()
