"""Small float64 problems shared by the library tests."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

DT = torch.float64


def tiny_mlp(seed: int = 0, sizes=(5, 7, 3), batchnorm: bool = False) -> torch.nn.Module:
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = [torch.nn.Linear(sizes[0], sizes[1])]
    if batchnorm:
        layers.append(torch.nn.BatchNorm1d(sizes[1]))
    layers += [torch.nn.Tanh(), torch.nn.Linear(sizes[1], sizes[2])]
    return torch.nn.Sequential(*layers).to(DT)


def loss_for(net: torch.nn.Module):
    def loss(params, batch):
        x, y = batch
        return torch.nn.functional.cross_entropy(functional_call(net, params, (x,)), y)

    return loss


def problem(T: int = 10, seed: int = 0, batch: int = 8, sizes=(5, 7, 3)):
    """``(net, loss, params, batches, objective)`` for a tiny classifier."""
    net = tiny_mlp(seed, sizes)
    g = torch.Generator().manual_seed(seed + 1)
    X = torch.randn(T + 1, batch, sizes[0], dtype=DT, generator=g)
    Y = torch.randint(0, sizes[-1], (T + 1, batch), generator=g)
    Xv = torch.randn(40, sizes[0], dtype=DT, generator=g)
    Yv = torch.randint(0, sizes[-1], (40,), generator=g)
    loss = loss_for(net)
    params = {k: v.detach().clone() for k, v in net.named_parameters()}
    batches = list(zip(X, Y, strict=True))
    return net, loss, params, batches, (lambda p: loss(p, (Xv, Yv)))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def max_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).detach().abs().max()) for k in a)


def _has_mnist() -> bool:
    from hypergrad.data import data_root

    return (data_root() / "mnist" / "t10k-images-idx3-ubyte.gz").exists()


def run_mnist_tiny(**overrides):
    """``experiments.run("mnist-schedules")`` at tiny scale on one thread (a module fixture's
    body); ``overrides``: ``{"online.seeds": [0, 1], ...}`` (dotted keys into the settings)."""
    import torch

    from hypergrad import experiments as ex

    s = ex.settings("mnist-schedules", "tiny")
    for key, value in overrides.items():
        group, name = key.split(".")
        s[group][name] = value
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return ex.run("mnist-schedules", s, progress=False)
    finally:
        torch.set_num_threads(n)


#: True when the MNIST test files are in the data folder ($HYPERGRAD_DATA in CI)
HAS_MNIST = _has_mnist()
needs_mnist = pytest.mark.skipif(not HAS_MNIST, reason="MNIST files not found in $HYPERGRAD_DATA")


def write_unit_file(path, data: dict) -> None:
    """``data`` to the unit file ``path`` in the form its name says: gzip-compressed JSON for
    ``<name>.json.gz`` (as the store writes it), plain JSON for the legacy ``<name>.json``."""
    import json
    from pathlib import Path

    from hypergrad.io import atomic_write_json_gz

    path = Path(path)
    if path.name.endswith(".gz"):
        atomic_write_json_gz(path, data)
    else:
        path.write_text(json.dumps(data))
