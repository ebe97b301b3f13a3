"""The exact hypergradient with one learning rate per group of weights: a T × G schedule."""

import pytest
import torch
import torch.nn.functional as F

import hypergrad as hg
from hypergrad import optim
from hypergrad.dynamics import grouped
from hypergrad.hypergradient import unroll
from tests.helpers import DT, problem

GROUPS = {"0.weight": 0, "0.bias": 0, "2.weight": 1, "2.bias": 1}


def _schedule(T, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (0.05 + 0.1 * torch.rand(T, 2, generator=g, dtype=DT))


@pytest.mark.parametrize("make", [lambda l: hg.sgd(l, momentum=0.9, weight_decay=1e-3),
                                  lambda l: hg.adam(l)], ids=["momentum", "adam"])
def test_grouped_hypergradient_reverse_forward_and_central_differences(make):
    T = 6
    _, loss, params, batches, objective = problem(T=T)
    dyn = make(loss)
    lrs = _schedule(T) * (0.1 if "adam" in dyn.name else 1.0)
    value, rev = hg.hypergradient(dyn, params, lrs, batches[:T], objective, groups=GROUPS)
    _, fwd = hg.hypergradient(dyn, params, lrs, batches[:T], objective, groups=GROUPS,
                              mode="forward")
    assert rev.shape == (T, 2)
    torch.testing.assert_close(rev, fwd, rtol=1e-10, atol=1e-13)
    gdyn = grouped(dyn, GROUPS)
    h = 1e-6
    for t, g in [(0, 0), (0, 1), (3, 1), (T - 1, 0)]:
        vals = []
        for sign in (1, -1):
            e = lrs.clone()
            e[t, g] += sign * h
            state, _ = unroll(gdyn, params, e, batches[:T])
            vals.append(float(objective(state.w["params"])))
        fd = (vals[0] - vals[1]) / (2 * h)
        assert float(rev[t, g]) == pytest.approx(fd, rel=1e-6, abs=1e-10)


def test_equal_rates_in_every_group_sum_to_the_scalar_hypergradient():
    T = 5
    _, loss, params, batches, objective = problem(T=T)
    dyn = hg.sgd(loss, momentum=0.5)
    lrs = _schedule(T)[:, 0]
    _, scalar = hg.hypergradient(dyn, params, lrs, batches[:T], objective)
    _, per = hg.hypergradient(dyn, params, lrs[:, None].expand(T, 2), batches[:T], objective,
                              groups=GROUPS)
    torch.testing.assert_close(per.sum(1), scalar, rtol=1e-10, atol=1e-14)
    assert (per[:, 0] - per[:, 1]).abs().max() > 1e-6     # the groups differ


def test_rtho_per_group_is_the_sum_of_the_exact_hypergradient():
    """With β = 0 and μ = 1, the optimizer's Δ^g_T is Σ_{t<T} ∂f_T/∂η_{t,g} along a constant
    schedule: the online estimate and the exact T × G hypergradient agree."""
    T = 5
    net, loss, params, batches, objective = problem(T=T)
    val = objective
    rates = [0.1, 0.05]
    model = net
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(params[n])
    opt = optim.RTHO([{"params": model[0].parameters(), "lr": rates[0]},
                      {"params": model[2].parameters(), "lr": rates[1]}], beta=0.0)
    for b in batches[:T + 1]:
        opt.step(lambda b=b: F.cross_entropy(model(b[0]), b[1]),
                 lambda: val(dict(model.named_parameters())))
    online = torch.stack([d.hypergradient for d in opt.last_step])
    lrs = torch.tensor([rates] * T, dtype=DT)
    _, exact = hg.hypergradient(hg.sgd(loss), params, lrs, batches[:T], objective,
                                groups=GROUPS)
    torch.testing.assert_close(online, exact.sum(0), rtol=1e-9, atol=1e-13)


def test_grouped_schedules_are_checked():
    T = 3
    _, loss, params, batches, objective = problem(T=T)
    dyn = hg.sgd(loss)
    with pytest.raises(ValueError, match="T x 2"):
        hg.hypergradient(dyn, params, torch.full((T,), 0.1), batches[:T], objective,
                         groups=GROUPS)
    bad = torch.full((T, 2), 0.1, dtype=DT)
    bad[1, 1] = -0.1
    with pytest.raises(ValueError, match="step 1, group 1"):
        hg.hypergradient(dyn, params, bad, batches[:T], objective, groups=GROUPS)
    bad[1, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite learning rate at step 1, group 1"):
        hg.hypergradient(dyn, params, bad, batches[:T], objective, groups=GROUPS)
    with pytest.raises(ValueError, match="names the weights"):
        hg.hypergradient(dyn, params, torch.full((T, 2), 0.1), batches[:T], objective,
                         groups={"0.weight": 0, "2.weight": 1})
    with pytest.raises(ValueError, match="0, 1"):
        hg.hypergradient(dyn, params, torch.full((T, 2), 0.1), batches[:T], objective,
                         groups={**GROUPS, "2.bias": 3})
