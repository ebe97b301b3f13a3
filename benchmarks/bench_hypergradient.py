"""Reverse-mode hypergradient (checkpointed) vs plain autograd through the unrolled loop.

The paper's MNIST MLP (784-500-500-500-10), batch 100, float32, T = 300 SGD steps. Prints,
from one run: time(hypergradient) / time(unrolled autograd), time(hypergradient) / time(T
training steps), and peak memory(unrolled) / peak memory(hypergradient).

    python -m benchmarks.bench_hypergradient [--T 300] [--device cpu]
"""

from __future__ import annotations

import torch

import hypergrad as hg
from benchmarks.common import header, mnist_mlp_problem, parse
from hypergrad.hypergradient import unroll
from hypergrad.profiling import peak_memory, time_interleaved


def main():
    args = parse(__doc__.splitlines()[0], T=300, checkpoint_every=0)
    header(f"exact hypergradient, T = {args.T}", args.device)
    _, loss, params, batches, objective = mnist_mlp_problem(args.T, device=args.device)
    dyn = hg.sgd(loss)
    lrs = torch.full((args.T,), 0.05, device=args.device)
    k = args.checkpoint_every or None

    def ours():
        return hg.hypergradient(dyn, params, lrs, batches, objective, checkpoint_every=k)[1]

    def unrolled():
        eta = lrs.clone().requires_grad_()
        p = dict(params)
        for t, b in enumerate(batches):
            leaves = [v if v.requires_grad else v.requires_grad_() for v in p.values()]
            gs = torch.autograd.grad(loss(p, b), leaves, create_graph=True)
            p = {n: v - eta[t] * g for (n, v), g in zip(p.items(), gs, strict=True)}
        objective(p).backward()
        return eta.grad

    def training():
        unroll(dyn, params, lrs, batches, check=False)

    g1, g2 = ours(), unrolled()
    err = float((g1 - g2).norm() / g2.norm())
    print(f"relative difference of the two hypergradients (float32): {err:.2e} "
          f"(norm {float(g2.norm()):.3e})")
    times = time_interleaved({"ours": ours, "unrolled": unrolled, "training": training},
                             repeat=args.repeat, warmup=0, device=args.device)
    t_ours, t_unrolled, t_train = times["ours"], times["unrolled"], times["training"]
    m_ours = peak_memory(ours, device=args.device)
    m_unrolled = peak_memory(unrolled, device=args.device)
    print(f"time   ours {t_ours:.2f} s | unrolled autograd {t_unrolled:.2f} s | "
          f"{args.T} training steps {t_train:.2f} s")
    print(f"memory ours {m_ours:.0f} MiB | unrolled autograd {m_unrolled:.0f} MiB")
    print(f"RATIO time ours / unrolled        = {t_ours / t_unrolled:.2f}   (goal <= 1.5)")
    print(f"RATIO time ours / training alone  = {t_ours / t_train:.2f}")
    print(f"RATIO memory unrolled / ours      = {m_unrolled / max(m_ours, 1e-9):.1f}   (goal >= 5)")


if __name__ == "__main__":
    main()
