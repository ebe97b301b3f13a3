"""The drop-in optimizer ``hypergrad.optim.Marthe``: one step with G = 1, 2, 4 learning rates
(one group per layer of the paper's MLP, or pairs of layers) against one plain
``torch.optim.SGD`` step, one step of the functional tuner ``hg.Marthe`` and one step of the
straightforward double-backward MARTHE of ``bench_online`` (the floor issue 23 sets: a
MARTHE step should cost no more than it).

The paper's MNIST MLP (784-500-500-500-10), batch 100 for both minibatches, float32, μ = 0.9
fixed (a Hessian-vector product every step). All variants run K steps on the same minibatches
after the same warm-up (the optimizers continue from round to round); times per step are the
best of ``--repeat`` interleaved rounds, and every ratio comes from the same run.

    python -m benchmarks.bench_optim [--device cpu] [--steps 10] [--repeat 3] [--out FILE]
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

import hypergrad as hg
from benchmarks.bench_online import double_backward_runner
from benchmarks.common import SIZES, header, mnist_mlp_problem, parse
from hypergrad import optim
from hypergrad.profiling import time_interleaved


def groups_of(model: torch.nn.Module, G: int) -> list[dict]:
    """The linear layers split into ``G`` consecutive groups (G = 4: one per layer)."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    size = -(-len(layers) // G)
    return [{"params": [p for m in layers[i:i + size] for p in m.parameters()]}
            for i in range(0, len(layers), size)]


def main():
    args = parse(__doc__.splitlines()[0], steps=10, out="")
    dev, K = args.device, args.steps
    header(f"hypergrad.optim on the MNIST MLP, batch 100, {K} steps per timing", dev)
    model, loss, params, batches, objective = mnist_mlp_problem(K + 3, device=dev)
    warm, run = batches[:3], batches[3:]

    fns = {}
    sgd_model = copy.deepcopy(model)
    sgd = torch.optim.SGD(sgd_model.parameters(), lr=0.05)

    def sgd_step():
        for x, y in run:
            sgd.zero_grad()
            F.cross_entropy(sgd_model(x), y).backward()
            sgd.step()
    fns["torch.optim.SGD"] = sgd_step

    tuner = hg.Marthe(hg.sgd(loss), lr=0.05, beta=1e-4, mu=0.9)
    ostate = tuner.init(params)
    for b in warm:
        ostate, _ = tuner.step(ostate, b, objective)

    def functional():
        o = ostate
        for b in run:
            o, _ = tuner.step(o, b, objective)
    fns["hg.Marthe (functional)"] = functional

    fns["double-backward MARTHE"] = double_backward_runner(loss, objective, params, warm, run)

    n_groups = {}
    for G in (1, 2, 4):
        m = copy.deepcopy(model)
        opt = optim.Marthe(groups_of(m, G), lr=0.05, beta=1e-4, mu=0.9)
        n_groups[G] = len(opt.param_groups)
        opt.val_closure = lambda m=m: objective(dict(m.named_parameters()))   # E, as above
        for x, y in warm:
            opt.step(lambda: F.cross_entropy(m(x), y))  # noqa: B023 (called at once)

        def go(m=m, opt=opt):        # continues from where the last round stopped: the same
            for x, y in run:         # work per step, without reloading a snapshot
                opt.step(lambda: F.cross_entropy(m(x), y))  # noqa: B023 (called at once)
        fns[f"optim.Marthe G={G}"] = go

    times = {k: v / K for k, v in time_interleaved(fns, repeat=args.repeat, device=dev).items()}
    base, ref = times["torch.optim.SGD"], times["hg.Marthe (functional)"]
    floor = times["double-backward MARTHE"]
    for name, t in times.items():
        print(f"{name:26s} {1e3 * t:8.2f} ms/step   x SGD {t / base:5.2f}   "
              f"x functional {t / ref:5.2f}   x double-backward {t / floor:5.2f}")
    if args.out:
        from hypergrad.io import atomic_write_json, run_metadata

        atomic_write_json(args.out, {
            "meta": run_metadata(), "device": dev, "steps": K, "repeat": args.repeat,
            "model": "MLP " + "-".join(map(str, SIZES)) + ", batch 100, float32, mu = 0.9",
            "groups": n_groups,
            "ms_per_step": {k: 1e3 * t for k, t in times.items()},
            "ratio_to_sgd": {k: t / base for k, t in times.items()},
            "ratio_to_functional": {k: t / ref for k, t in times.items()},
            "ratio_to_double_backward": {k: t / floor for k, t in times.items()},
        })


if __name__ == "__main__":
    main()
