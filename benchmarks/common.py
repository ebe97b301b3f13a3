"""Shared setup for the benchmarks: the paper's MNIST MLP, float32, batch 100, CPU by default."""

from __future__ import annotations

import argparse
import os

import torch

from hypergrad.models import MLP, functional, module_loss, module_objective

#: the paper's MLP; ``$HYPERGRAD_BENCH_SIZES`` (e.g. ``784,16,10``) shrinks it, for the tiny
#: CI run of ``scripts/device_check.py``
SIZES = tuple(int(n) for n in os.environ.get("HYPERGRAD_BENCH_SIZES", "784,500,500,500,10").split(","))


def parse(description: str, **defaults) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeat", type=int, default=3)
    for k, v in defaults.items():
        p.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=v)
    return p.parse_args()


def mnist_mlp_problem(T: int, batch: int = 100, device: str = "cpu", seed: int = 0):
    """``(model, loss, params, batches, objective)``: real MNIST when ``$HYPERGRAD_DATA`` is
    set (else random images of the same shape), the paper's MLP, float32."""
    torch.manual_seed(seed)
    n = max(T, 1) * batch
    if os.environ.get("HYPERGRAD_DATA"):
        from hypergrad.data import mnist_split

        d = mnist_split(n_train=7000, n_val=700, seed=seed)
        x, y = d["train"]
        idx = torch.arange(n) % len(x)
        x, y, (xv, yv) = x[idx], y[idx], d["val"]
    else:
        x, y = torch.randn(n, 784), torch.randint(0, 10, (n,))
        xv, yv = torch.randn(700, 784), torch.randint(0, 10, (700,))
    x, y, xv, yv = (t.to(device) for t in (x, y, xv, yv))
    model = MLP(SIZES).to(device)
    params, _ = functional(model)
    batches = [(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]) for i in range(T)]
    return model, module_loss(model), params, batches, module_objective(model, (xv[:batch], yv[:batch]))


def header(title: str, device: str) -> None:
    print(f"== {title} | torch {torch.__version__} | device {device} | "
          f"threads {torch.get_num_threads()}")


def quick_mnist_task(device: str = "cpu", sizes=(784, 100, 100, 10), T: int = 100,
                     batch: int = 100) -> dict:
    """The quick-scale Section 5 task as ``hypergrad.experiments`` builds it: MNIST 7000/700
    (data seed 0), an MLP, SGD on cross-entropy, ``E`` = loss on the 700 validation images.
    ``init_params(seed)``: ``w_0``; ``batches(seed, salt)``: ``T`` minibatches (salt 0: the
    seed's own; salt ``it + 1``: LRS-OPT's fresh ones at iteration ``it``)."""
    import hypergrad as hg
    from hypergrad.data import mnist_split, sample_batches

    data = mnist_split(7000, 700, seed=0, device=device)
    net = MLP(tuple(sizes)).to(device)

    def init_params(seed: int) -> dict:
        torch.manual_seed(seed)
        return functional(MLP(tuple(sizes)).to(device))[0]

    def batches(seed: int, salt: int = 0) -> list:
        key = (seed * 1_000_003 + salt) % (2**63 - 1)       # experiments' _seed_key
        return sample_batches(data["train"], batch, T, seed=key)

    return {"net": net, "dyn": hg.sgd(module_loss(net)), "data": data, "T": T,
            "objective": module_objective(net, data["val"]), "init_params": init_params,
            "batches": batches}


def concurrent_processes(target, args_list: list[tuple]) -> float:
    """Start one ``spawn`` process per ``args`` of ``args_list`` running
    ``target(*args, ready, go, out)``; each sets ``ready`` when warmed up, waits for ``go``,
    times its work and puts the seconds on ``out``. Returns the slowest process's time: the
    wall time of the work done at once."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    out, go = ctx.Queue(), ctx.Event()
    readies = [ctx.Event() for _ in args_list]
    procs = [ctx.Process(target=target, args=(*args, ready, go, out))
             for args, ready in zip(args_list, readies, strict=True)]
    for p in procs:
        p.start()
    for r in readies:
        r.wait()
    go.set()
    times = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return max(times)
