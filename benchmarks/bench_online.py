"""One MARTHE step vs one plain SGD step, vs a straightforward double-backward MARTHE, and
forward-over-reverse vs reverse-over-reverse Hessian-vector products.

The paper's MNIST MLP (784-500-500-500-10), batch 100 for both the training and the
validation minibatch, float32. Every variant runs the same K consecutive steps from the same
warm state (after a few steps, so that the tangent is not zero); times are per step, best of
``--repeat`` interleaved rounds, and all ratios come from the same run.

    python -m benchmarks.bench_online [--device cpu] [--steps 10] [--repeat 10] [--out FILE]

``--out FILE`` also writes the times (ms per step) and the ratios to a JSON file, with the
run's metadata (commit, torch, hardware, date) beside them; chapter 4 reads
``benchmarks/results/bench_online_cpu.json``.
"""

from __future__ import annotations

import dataclasses

import torch
from torch.func import jvp

import hypergrad as hg
from benchmarks.common import SIZES, header, mnist_mlp_problem, parse
from hypergrad.dynamics import phi_jvp_reference
from hypergrad.profiling import time_interleaved


class ForwardOverReverse(hg.Dynamics):
    """The library's dynamics with ``∇²L v`` by forward-over-reverse (``jvp`` of ``grad``)
    instead of double backward: the alternative the default was measured against."""

    def grad_and_hvp(self, theta, v, batch, aux, mode="rev"):
        return jvp(lambda th: self.grad(th, batch, aux), (theta,), (v,), has_aux=True)


class OneJvpOfPhi(hg.Dynamics):
    """Step 4 as ONE ``torch.func.jvp(Φ_t, (w, η), (μZ, 1))`` (Algorithm 1 as written)."""

    def phi_jvp(self, w, lr, batch, aux, dw=None, need_B=True):
        return phi_jvp_reference(self, w, lr, batch, aux, dw)


def _as(cls, dyn):
    return cls(**{f.name: getattr(dyn, f.name) for f in dataclasses.fields(dyn)})


def double_backward_marthe(loss, objective, mu: float, beta: float):
    """The obvious implementation of one MARTHE step for plain SGD (fixed μ), with autograd."""

    def step(w, Z, eta, batch):
        leaves = {k: v.detach().requires_grad_() for k, v in w.items()}
        gE = torch.autograd.grad(objective(leaves), list(leaves.values()))
        delta = sum((a * Z[k]).sum() for a, k in zip(gE, leaves, strict=True))
        eta = max(eta - beta * float(delta), 0.0)
        g = torch.autograd.grad(loss(leaves, batch), list(leaves.values()), create_graph=True)
        hz = torch.autograd.grad(g, list(leaves.values()), grad_outputs=[mu * Z[k] for k in leaves])
        Z = {k: mu * Z[k] - eta * h - gi.detach() for (k, h, gi) in zip(leaves, hz, g, strict=True)}
        w = {k: w[k] - eta * gi.detach() for k, gi in zip(leaves, g, strict=True)}
        return w, Z, eta

    return step


def double_backward_runner(loss, objective, params, warm, run, mu: float = 0.9,
                           beta: float = 1e-4):
    """A function that runs :func:`double_backward_marthe` over ``run`` from the state it
    reaches after ``warm`` (η_0 = 0.05, Z_0 = 0): the reference step of the benchmarks."""
    db = double_backward_marthe(loss, objective, mu=mu, beta=beta)
    Z = {k: torch.zeros_like(v) for k, v in params.items()}
    w, eta = params, 0.05
    for b in warm:
        w, Z, eta = db(w, Z, eta, b)

    def go():
        w_, Z_, e_ = w, Z, eta
        for b in run:
            w_, Z_, e_ = db(w_, Z_, e_, b)
    return go


def main():
    args = parse(__doc__.splitlines()[0], steps=10, out="")
    dev, K = args.device, args.steps
    header(f"online steps on the MNIST MLP, batch 100, {K} steps per timing", dev)
    _, loss, params, batches, objective = mnist_mlp_problem(K + 5, device=dev)
    warm, run = batches[:5], batches[5:]
    dyn = hg.sgd(loss)

    ref = {k: v.clone().requires_grad_() for k, v in params.items()}
    opt = torch.optim.SGD(list(ref.values()), lr=0.05)

    def sgd_torch():
        for b in run:
            opt.zero_grad()
            loss(ref, b).backward()
            opt.step()

    def sgd_hg():
        state = dyn.init(params)
        for b in run:
            state = dyn.step(state, 0.05, b)

    double_backward = double_backward_runner(loss, objective, params, warm, run)

    fns = {"torch.optim.SGD": sgd_torch, "hg.sgd": sgd_hg, "double-backward MARTHE mu=0.9": double_backward}
    variants = {"MARTHE mu=0.9": (dyn, dict(mu=0.9)),
                "MARTHE mu=0.9 hvp=fwd": (_as(ForwardOverReverse, dyn), dict(mu=0.9)),
                "MARTHE mu=0.9 one jvp(Phi)": (_as(OneJvpOfPhi, dyn), dict(mu=0.9)),
                "MARTHE mu=auto kappa=1e-3": (dyn, dict(mu="auto", kappa=1e-3)),
                "RTHO (mu=1)": (dyn, dict(mu=1.0)),
                "HD (mu=0)": (dyn, dict(mu=0.0))}
    resets = {}
    for name, (dyn_, kw) in variants.items():
        tuner = hg.Marthe(dyn_, lr=0.05, beta=1e-4, **kw)
        ostate = tuner.init(params)
        for b in warm:
            ostate, _ = tuner.step(ostate, b, objective)

        def go(t=tuner, o=ostate, name=name):
            mus = []
            for b in run:
                o, info = t.step(o, b, objective)
                mus.append(info.mu)
            resets[name] = sum(m == 0 for m in mus)

        fns[name] = go
    times = {k: v / K for k, v in time_interleaved(fns, repeat=args.repeat, device=dev).items()}
    base, ref_db = times["torch.optim.SGD"], times["double-backward MARTHE mu=0.9"]
    for name, t in times.items():
        extra = f"   mu_t = 0 in {resets[name]}/{K} steps" if name in resets else ""
        print(f"{name:32s} {1e3 * t:8.2f} ms/step   x SGD {t / base:5.2f}   "
              f"x double-backward {t / ref_db:5.2f}{extra}")
    default = "MARTHE mu=0.9"
    if args.out:
        from hypergrad.io import atomic_write_json, run_metadata

        atomic_write_json(args.out, {
            "meta": run_metadata(), "device": dev, "steps": K, "repeat": args.repeat,
            "model": "MLP " + "-".join(map(str, SIZES)) + ", batch 100, float32",
            "ms_per_step": {k: 1e3 * t for k, t in times.items()},
            "ratio_to_sgd": {k: t / base for k, t in times.items()},
            "ratio_to_double_backward": {k: t / ref_db for k, t in times.items()},
        })
    print(f"RATIO MARTHE (mu=0.9) / SGD step                       = {times[default] / base:.2f}  (goal <= 3.5)")
    print(f"RATIO MARTHE (mu=0.9) / double-backward                = {times[default] / ref_db:.2f}  (goal <= 1.0)")
    print(f"RATIO MARTHE (mu=auto) / SGD step                      = "
          f"{times['MARTHE mu=auto kappa=1e-3'] / base:.2f}")
    print(f"RATIO hvp fwd-over-rev / rev-over-rev (MARTHE mu=0.9)  = "
          f"{times['MARTHE mu=0.9 hvp=fwd'] / times[default]:.2f}")


if __name__ == "__main__":
    main()
