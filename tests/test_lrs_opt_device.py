"""LRS-OPT on an accelerator gives the CPU's result (run by scripts/device_check.sh, which
selects the tests named ``device``; skipped where there is no CUDA)."""

import pytest
import torch

import hypergrad as hg
from hypergrad.lrs_opt import lrs_opt
from tests.helpers import DT, problem

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


def _run(device, optimizer, tmp_path=None):
    _, loss, params, batches, objective = problem(T=6)
    to = lambda t: t.to(device)  # noqa: E731
    params = {k: to(v) for k, v in params.items()}
    batches = [(to(x), to(y)) for x, y in batches[:6]]
    xv, yv = batches[-1]
    return lrs_opt(hg.sgd(loss), params, torch.full((6,), 0.1, dtype=DT, device=device), batches,
                   lambda p: loss(p, (xv, yv)), iterations=4, step_size=0.02, max_lr=0.3,
                   optimizer=optimizer, progress=False,
                   save_path=None if tmp_path is None else tmp_path / f"{device}.json")


@cuda
@pytest.mark.parametrize("optimizer", ["pgd", "adam", "nesterov"])
def test_lrs_opt_on_the_device_equals_the_cpu(optimizer, tmp_path):
    cpu, dev = _run("cpu", optimizer), _run("cuda", optimizer, tmp_path)
    assert torch.allclose(torch.tensor(dev.lrs, dtype=DT), torch.tensor(cpu.lrs, dtype=DT),
                          rtol=1e-9, atol=1e-12)
    assert torch.allclose(torch.tensor(dev.history), torch.tensor(cpu.history), rtol=1e-9)
    again = _run("cuda", optimizer, tmp_path)                  # resumes its saved run on cuda
    assert again.lrs == dev.lrs
