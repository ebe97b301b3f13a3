"""Populations (hypergrad.population): N online runs as one vmap-ed computation, each member
equal to its serial run — including members that diverge."""

import math

import pytest
import torch

import hypergrad as hg
from hypergrad.population import run_population, stack_params
from tests.helpers import DT, loss_for, tiny_mlp

N, T, B = 5, 12, 8


def _data(dtype=DT, n=N, steps=T, seed=0):
    net = tiny_mlp(0).to(dtype)
    loss = loss_for(net)
    params = []
    for i in range(n):
        m = tiny_mlp(10 + i).to(dtype)
        params.append({k: v.detach().clone() for k, v in m.named_parameters()})
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(steps, n, B, 5, generator=g).to(dtype)
    Y = torch.randint(0, 3, (steps, n, B), generator=g)
    Xv = torch.randn(steps, n, 20, 5, generator=g).to(dtype)
    Yv = torch.randint(0, 3, (steps, n, 20), generator=g)
    batches = [(X[t], Y[t]) for t in range(steps)]
    vals = [(Xv[t], Yv[t]) for t in range(steps)]
    return loss, params, batches, vals


def _serial(dyn, loss, params_i, batches, vals, i, hp, max_loss_ratio=10.0):
    tuner = hg.Marthe(dyn, **hp)
    bs = [(x[i], y[i]) for x, y in batches]
    objs = [lambda p, v=(xv[i], yv[i]): loss(p, v) for xv, yv in vals]
    # the serial history up to the failing step, and the error run_online raises
    ostate, infos = tuner.init(params_i), []
    err = None
    try:
        ostate, hist = hg.run_online(tuner, params_i, bs, objs, max_loss_ratio=max_loss_ratio)
    except hg.DivergenceError as e:
        err = e
        ostate = tuner.init(params_i)
        for t in range(e.step):
            ostate, info = tuner.step(ostate, bs[t], objs[t])
            infos.append(info)
        hist = hg.History.from_infos(infos)
    return ostate, hist, err


def _close(a, b, rel, abs_):
    return all(x == pytest.approx(y, rel=rel, abs=abs_) or (math.isnan(x) and math.isnan(y))
               for x, y in zip(a, b, strict=True))


HPS = [dict(lr=0.3, beta=1e-2, mu="auto", kappa=1e-3), dict(lr=0.1, beta=1e-2, mu=0.0, kappa=None),
       dict(lr=0.2, beta=5e-3, mu=1.0, kappa=None), dict(lr=0.05, beta=1e-2, mu=0.7, kappa=1e-2),
       dict(lr=0.3, beta=0.0, mu="auto", kappa=None)]


@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
def test_every_member_equals_its_serial_run_float64(opt):
    loss, params, batches, vals = _data()
    dyn = {"sgd": hg.sgd(loss), "momentum": hg.sgd(loss, momentum=0.9, weight_decay=1e-2),
           "adam": hg.adam(loss, weight_decay=1e-3)}[opt]
    hps = [dict(h, beta=h["beta"] * (1e-3 if opt == "adam" else 1)) for h in HPS]
    pop = run_population(dyn, params, batches, loss, vals, **{k: [h[k] for h in hps] for k in hps[0]})
    for i in range(N):
        ostate, hist, err = _serial(dyn, loss, params[i], batches, vals, i, hps[i])
        assert err is None and pop.diverged[i] is None
        for f in ("lr", "mu", "beta", "hypergradient", "loss", "objective"):
            assert _close(getattr(pop.histories[i], f), getattr(hist, f), 1e-10, 1e-14), (i, f)
        for k, v in ostate.state.w["params"].items():
            assert float((pop.params[k][i] - v).abs().max()) < 1e-10
    assert len({h.lr[-1] for h in pop.histories}) == N          # the members really differ


def test_members_that_diverge_stop_alone_and_name_their_step():
    loss, params, batches, vals = _data(steps=40)
    dyn = hg.sgd(loss)
    hps = [dict(lr=0.3, beta=1e-2, mu="auto", kappa=None), dict(lr=5.0, beta=50.0, mu=1.0, kappa=None),
           dict(lr=0.1, beta=1e-2, mu=0.0, kappa=None), dict(lr=2.0, beta=5.0, mu="auto", kappa=10.0),
           dict(lr=0.1, beta=1e-3, mu=0.5, kappa=None)]
    pop = run_population(dyn, params, batches, loss, vals, max_loss_ratio=3.0,
                         **{k: [h[k] for h in hps] for k in hps[0]})
    n_div = 0
    for i in range(N):
        ostate, hist, err = _serial(dyn, loss, params[i], batches, vals, i, hps[i], 3.0)
        if err is None:
            assert pop.diverged[i] is None and len(pop.histories[i].lr) == 40
        else:
            n_div += 1
            assert pop.diverged[i].step == err.step and str(pop.diverged[i]) == str(err)
            assert len(pop.histories[i].lr) == err.step
        for f in ("lr", "mu", "beta", "hypergradient", "loss", "objective"):
            assert _close(getattr(pop.histories[i], f), getattr(hist, f), 1e-10, 1e-14), (i, f)
        for k, v in ostate.state.w["params"].items():     # frozen at the last good step
            assert float((pop.params[k][i] - v).abs().max()) < 1e-10
    assert n_div >= 1 and any(d is None for d in pop.diverged)


def test_float32_members_equal_their_serial_runs_to_rounding():
    loss, params, batches, vals = _data(dtype=torch.float32, steps=8)
    dyn = hg.sgd(loss, momentum=0.9)
    pop = run_population(dyn, params, batches, loss, vals, lr=0.1, beta=1e-3, mu="auto")
    for i in range(N):
        ostate, hist, err = _serial(dyn, loss, params[i], batches, vals, i,
                                    dict(lr=0.1, beta=1e-3, mu="auto"))
        assert err is None
        for f in ("lr", "beta", "loss", "objective"):
            assert _close(getattr(pop.histories[i], f), getattr(hist, f), 1e-4, 1e-6), (i, f)
        assert _close(pop.histories[i].hypergradient, hist.hypergradient, 1e-3, 1e-6)
        for k, v in ostate.state.w["params"].items():
            assert float((pop.params[k][i] - v).abs().max()) < 1e-5


def test_bad_population_input():
    loss, params, batches, vals = _data(steps=2)
    dyn = hg.sgd(loss)
    with pytest.raises(ValueError, match="lr has 2 values for 5 members"):
        run_population(dyn, params, batches, loss, vals, lr=[0.1, 0.2])
    with pytest.raises(ValueError, match="beta"):
        run_population(dyn, params, batches, loss, vals, beta=math.inf)
    with pytest.raises(ValueError, match="member 1 has other weights"):
        stack_params([params[0], {k: v[..., :1] for k, v in params[1].items()}])
    with pytest.raises(ValueError, match="val_batches has 1 entries but batches has 2"):
        run_population(dyn, params, batches, loss, vals[:1])
    with pytest.raises(ValueError, match="max_loss_ratio"):
        run_population(dyn, params, batches, loss, vals, max_loss_ratio=0)


def test_experiments_population_agrees_with_one_at_a_time():
    """`--population N` of the mnist-schedules experiment: the fixed-β online units computed
    N at a time agree with the one-at-a-time ones (float32: to rounding; same divergences)."""
    import os

    from hypergrad import experiments as ex

    if not os.environ.get("HYPERGRAD_DATA"):
        pytest.skip("MNIST files not found in $HYPERGRAD_DATA")
    s = ex.settings("mnist-schedules", "tiny")
    one = ex.run("mnist-schedules", s, progress=False)
    many = ex.run("mnist-schedules", s, progress=False, population=4)
    compared = 0
    for method, by_beta in one["online"].items():
        for beta, by_seed in by_beta.items():
            for seed, a in by_seed.items():
                b = many["online"][method][beta][seed]
                assert a["diverged"] == b["diverged"] and a["diverged_at"] == b["diverged_at"]
                assert _close(a["lr"], b["lr"], 1e-4, 1e-7), (method, beta, seed)
                if not a["diverged"]:
                    assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
                compared += 1
    assert compared > 4
    with pytest.raises(SystemExit):
        ex.main(["real-world", "--population", "2", "--print-settings"])
