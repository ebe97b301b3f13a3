"""One MARTHE step vs one plain SGD step, vs a straightforward double-backward MARTHE, and
forward-over-reverse vs reverse-over-reverse Hessian-vector products.

The paper's MNIST MLP (784-500-500-500-10), batch 100 for both the training and the
validation minibatch, float32. All ratios come from the same run.

    python benchmarks/bench_online.py [--device cpu]
"""

from __future__ import annotations

import torch

import hypergrad as hg
from benchmarks.common import header, mnist_mlp_problem, parse
from hypergrad.profiling import time_it


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


def main():
    args = parse(__doc__.splitlines()[0])
    dev = args.device
    header("one online step on the MNIST MLP, batch 100", dev)
    model, loss, params, batches, objective = mnist_mlp_problem(3, device=dev)
    batch = batches[0]
    dyn = hg.sgd(loss)

    def sgd_step_torch():
        opt.zero_grad()
        loss(ref, batch).backward()
        opt.step()

    ref = {k: v.clone().requires_grad_() for k, v in params.items()}
    opt = torch.optim.SGD(list(ref.values()), lr=0.05)
    state = dyn.init(params)
    Z0 = {k: 1e-3 * torch.randn_like(v) for k, v in params.items()}
    times = {"torch.optim.SGD step": time_it(sgd_step_torch, repeat=args.repeat, device=dev),
             "hg.sgd step": time_it(lambda: dyn.step(state, 0.05, batch), repeat=args.repeat, device=dev)}
    db = double_backward_marthe(loss, objective, mu=0.9, beta=1e-4)
    times["double-backward MARTHE (mu=0.9)"] = time_it(
        lambda: db(params, Z0, 0.05, batch), repeat=args.repeat, device=dev)
    variants = {"MARTHE mu=0.9 hvp=fwd": dict(mu=0.9, hvp="fwd"),
                "MARTHE mu=0.9 hvp=rev": dict(mu=0.9, hvp="rev"),
                "MARTHE mu=0.9 one jvp(Phi)": dict(mu=0.9, tangent="jvp"),
                "MARTHE mu=0.9 hvp=rev est=jvp": dict(mu=0.9, hvp="rev", estimator="jvp"),
                "MARTHE mu=auto (default)": dict(mu="auto"),
                "MARTHE mu=auto est=jvp": dict(mu="auto", estimator="jvp"),
                "HD (mu=0)": dict(mu=0.0)}
    for name, kw in variants.items():
        tuner = hg.Marthe(dyn, lr=0.05, beta=1e-4, **kw)
        ostate = tuner.init(params)
        ostate, _ = tuner.step(ostate, batch, objective)
        ostate = ostate._replace(Z={"params": Z0}, mu=1.0)   # a non-zero tangent, μ_{t-1} = 1
        times[name] = time_it(lambda t=tuner, o=ostate: t.step(o, batch, objective),
                              repeat=args.repeat, device=dev)
    base, ref_db = times["torch.optim.SGD step"], times["double-backward MARTHE (mu=0.9)"]
    for name, t in times.items():
        print(f"{name:34s} {1e3 * t:8.1f} ms   x SGD {t / base:5.2f}   x double-backward {t / ref_db:5.2f}")
    default = "MARTHE mu=0.9 hvp=" + hg.online.default_hvp_mode(dev)
    print(f"RATIO MARTHE (default hvp) / SGD step          = {times[default] / base:.2f}  (goal <= 3.5)")
    print(f"RATIO MARTHE (default hvp) / double-backward   = {times[default] / ref_db:.2f}  (goal <= 1.0)")
    print(f"RATIO hvp fwd-over-rev / rev-over-rev (MARTHE)  = "
          f"{times['MARTHE mu=0.9 hvp=fwd'] / times['MARTHE mu=0.9 hvp=rev']:.2f}")


if __name__ == "__main__":
    main()
