"""Weight decay as a second hyperparameter: the exact hypergradient of a λ schedule, and λ
tuned online by hypergrad.optim with its own tangent."""

import io

import pytest
import torch
import torch.nn.functional as F

import hypergrad as hg
from hypergrad import optim
from hypergrad.dynamics import weight_decay_schedule
from hypergrad.hypergradient import unroll
from tests.helpers import DT, problem, tiny_mlp


@pytest.mark.parametrize("make", [lambda l: hg.sgd(l, momentum=0.9), lambda l: hg.adam(l)],
                         ids=["momentum", "adam"])
def test_weight_decay_hypergradient_reverse_forward_and_central_differences(make):
    T = 6
    _, loss, params, batches, objective = problem(T=T)
    base = make(loss)
    lrs = torch.full((T,), 0.01 if base.name == "adam" else 0.1, dtype=DT)
    dyn = weight_decay_schedule(base, lrs)
    lams = torch.linspace(0.01, 0.05, T, dtype=DT)
    _, rev = hg.hypergradient(dyn, params, lams, batches[:T], objective)
    _, fwd = hg.hypergradient(dyn, params, lams, batches[:T], objective, mode="forward")
    torch.testing.assert_close(rev, fwd, rtol=1e-10, atol=1e-14)
    h = 1e-6
    for t in (0, 3, T - 1):
        vals = []
        for sign in (1, -1):
            e = lams.clone()
            e[t] += sign * h
            vals.append(float(objective(unroll(dyn, params, e, batches[:T])[0].w["params"])))
        assert float(rev[t]) == pytest.approx((vals[0] - vals[1]) / (2 * h), rel=1e-6,
                                              abs=1e-11)
    # a constant λ schedule is the dynamics with that weight decay
    with_wd = (hg.adam(loss, weight_decay=0.03) if base.name == "adam"
               else hg.sgd(loss, momentum=0.9, weight_decay=0.03))
    a = unroll(with_wd, params, lrs, batches[:T])[0].w["params"]
    b = unroll(dyn, params, torch.full((T,), 0.03, dtype=DT), batches[:T])[0].w["params"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="without weight decay"):
        weight_decay_schedule(with_wd, lrs)


@pytest.mark.parametrize("kind,kw", [("sgd", dict(momentum=0.9)), ("adam", dict(lr=0.01))])
def test_online_weight_decay_estimate_is_the_sum_of_the_exact_hypergradient(kind, kw):
    """μ = 1 and β = β_λ = 0 (η and λ constant): Δ^λ_T = Σ_t ∂f_T/∂λ_t."""
    T = 5
    net, loss, params, batches, objective = problem(T=T)
    with torch.no_grad():
        for n, p in net.named_parameters():
            p.copy_(params[n])
    lr, lam = kw.get("lr", 0.1), 0.02
    opt = optim.RTHO(net.parameters(), kind, **{"lr": lr, **kw}, beta=0.0,
                     weight_decay=lam, weight_decay_beta=0.0)
    for b in batches[:T + 1]:
        opt.step(lambda b=b: F.cross_entropy(net(b[0]), b[1]),
                 lambda: objective(dict(net.named_parameters())))
    online = opt.param_groups[0]["hyper"]["weight_decay_delta"]
    base = hg.make_dynamics(kind, loss, **{k: v for k, v in kw.items() if k != "lr"})
    dyn = weight_decay_schedule(base, torch.full((T,), lr, dtype=DT))
    _, exact = hg.hypergradient(dyn, params, torch.full((T,), lam, dtype=DT), batches[:T],
                                objective)
    assert float(online) == pytest.approx(float(exact.sum()), rel=1e-9, abs=1e-13)
    assert abs(float(exact.sum())) > 1e-6


def _data(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [((torch.randn(16, 5, dtype=DT, generator=g),
              torch.randint(0, 3, (16,), generator=g)),
             (torch.randn(16, 5, dtype=DT, generator=g),
              torch.randint(0, 3, (16,), generator=g))) for _ in range(n)]


def _run(model, opt, data):
    for b, v in data:
        opt.step(lambda b=b: F.cross_entropy(model(b[0]), b[1]),
                 lambda v=v: F.cross_entropy(model(v[0]), v[1]))


def test_lambda_moves_by_its_rule_per_group_and_resumes():
    data = _data(8)

    def make(seed=13):
        m = tiny_mlp(seed)
        o = optim.Marthe([{"params": m[0].parameters()},
                          {"params": m[2].parameters(), "weight_decay_beta": None}],
                         lr=0.1, beta=1e-2, mu=0.9, momentum=0.5, weight_decay=0.01,
                         weight_decay_beta=1.0)
        return m, o

    m, o = make()
    _run(m, o, data[:4])
    before = o.param_groups[0]["weight_decay"]
    _run(m, o, data[4:5])
    h = o.param_groups[0]["hyper"]
    expected = max(before - 1.0 * float(h["weight_decay_delta"]), 0.0)
    assert o.param_groups[0]["weight_decay"] == pytest.approx(expected, rel=1e-14, abs=1e-18)
    assert o.param_groups[0]["weight_decay"] != 0.01       # λ moved in group 0 ...
    assert o.param_groups[1]["weight_decay"] == 0.01       # ... and not in group 1
    buf = io.BytesIO()
    torch.save({"m": m.state_dict(), "o": o.state_dict()}, buf)
    _run(m, o, data[5:])
    buf.seek(0)
    saved = torch.load(buf, weights_only=False)
    m2, o2 = make(seed=99)
    m2.load_state_dict(saved["m"])
    o2.load_state_dict(saved["o"])
    _run(m2, o2, data[5:])
    assert [g["weight_decay"] for g in o2.param_groups] == \
        [g["weight_decay"] for g in o.param_groups]
    assert all(torch.equal(a, b) for a, b in zip(m.parameters(), m2.parameters(),
                                                 strict=True))


def test_lambda_is_clamped_at_zero_and_checked():
    """With E = −(validation loss) the λ hypergradient changes sign here and a large β_λ
    drives λ below 0 at once: it is held at 0."""
    data = _data(6)
    m = tiny_mlp(14)
    o = optim.Marthe(m.parameters(), lr=0.1, beta=0.0, mu=0.9, weight_decay=1e-4,
                     weight_decay_beta=1e6)
    lams = []
    for b, v in data:
        o.step(lambda b=b: F.cross_entropy(m(b[0]), b[1]),
               lambda v=v: -F.cross_entropy(m(v[0]), v[1]))
        lams.append(o.param_groups[0]["weight_decay"])
    assert lams[0] == 1e-4 and 0.0 in lams[1:] and min(lams) >= 0.0
    with pytest.raises(ValueError, match="weight_decay_beta"):
        optim.Marthe(tiny_mlp(0).parameters(), weight_decay_beta=-1.0)
