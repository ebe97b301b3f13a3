"""hypergrad.optim: MARTHE as a torch.optim optimizer — the same algorithm as the functional
tuner, one learning rate per parameter group, checkpoints that resume bit-exactly."""

import copy
import io

import pytest
import torch
import torch.nn.functional as F

import hypergrad as hg
from hypergrad import optim
from tests.helpers import DT, tiny_mlp


def _data(n=8, seed=0, batch=16):
    g = torch.Generator().manual_seed(seed)
    return [((torch.randn(batch, 5, dtype=DT, generator=g),
              torch.randint(0, 3, (batch,), generator=g)),
             (torch.randn(batch, 5, dtype=DT, generator=g),
              torch.randint(0, 3, (batch,), generator=g)))
            for _ in range(n)]


def _closures(model, b, v):
    return (lambda: F.cross_entropy(model(b[0]), b[1]),
            lambda: F.cross_entropy(model(v[0]), v[1]))


def _functional(model, data, kind, tuner_kw, dyn_kw):
    """The functional tuner's trajectory: (η_t list, Δ_t list, final weights)."""
    def loss(p, batch):
        return F.cross_entropy(torch.func.functional_call(model, p, (batch[0],)), batch[1])

    def objective_for(batch):
        return lambda p: loss(p, batch)

    dyn = hg.make_dynamics(kind, loss, **dyn_kw)
    tuner = hg.Marthe(dyn, **tuner_kw)
    st = tuner.init({k: v.detach().clone() for k, v in model.named_parameters()})
    lrs, deltas = [], []
    for b, v in data:
        st, info = tuner.step(st, b, objective_for(v))
        lrs.append(float(info.lr))
        deltas.append(float(info.hypergradient))
    return lrs, deltas, tuner.params(st)


CASES = [
    ("sgd", dict(lr=0.1, beta=1e-2, mu="auto", kappa=1e-3), {}),
    ("sgd", dict(lr=0.1, beta=1e-2, mu=0.9), dict(momentum=0.9, weight_decay=1e-3)),
    ("sgd", dict(lr=0.05, beta=1e-2, mu=1.0), dict(momentum=0.5, nesterov=True)),
    ("sgd", dict(lr=0.1, beta=1e-2, mu=0.0, clip=0.05), {}),
    ("adam", dict(lr=1e-2, beta=1e-5, mu="auto", kappa=1e-2), dict(weight_decay=1e-3)),
]


@pytest.mark.parametrize("kind,tuner_kw,dyn_kw", CASES)
def test_one_group_equals_the_functional_tuner(kind, tuner_kw, dyn_kw):
    data = _data()
    model, ref = tiny_mlp(3), tiny_mlp(3)
    lrs, deltas, w = _functional(ref, data, kind, tuner_kw, dyn_kw)
    opt = optim.Marthe(model.parameters(), kind, **tuner_kw, **dyn_kw)
    got_lr, got_d = [], []
    for b, v in data:
        opt.step(*_closures(model, b, v))
        got_lr.append(float(opt.param_groups[0]["lr"]))
        got_d.append(float(opt.last_step[0].hypergradient))
    assert got_lr == pytest.approx(lrs, rel=1e-10, abs=1e-14)
    assert got_d == pytest.approx(deltas, rel=1e-10, abs=1e-14)
    assert len(set(lrs)) > 2                       # the rate moved: the test can fail
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), w[n], rtol=1e-10, atol=1e-12)


def test_hd_and_rtho_are_marthe_with_mu_fixed():
    data = _data(5)
    runs = {}
    for cls, kw in ((optim.HD, {}), (optim.Marthe, {"mu": 0.0}), (optim.RTHO, {}),
                    (optim.Marthe, {"mu": 1.0})):
        model = tiny_mlp(4)
        opt = cls(model.parameters(), lr=0.1, beta=1e-2, **kw)
        for b, v in data:
            opt.step(*_closures(model, b, v))
        runs[(cls.__name__, tuple(kw.items()))] = float(opt.param_groups[0]["lr"])
    vals = list(runs.values())
    assert vals[0] == vals[1] and vals[2] == vals[3] and vals[0] != vals[2]
    with pytest.raises(ValueError, match="μ = 0.0"):
        optim.HD([{"params": tiny_mlp(0).parameters(), "mu": 0.5}])


def _two_group_model(seed=5):
    model = tiny_mlp(seed)
    groups = [{"params": model[0].parameters(), "lr": 0.1},
              {"params": model[2].parameters(), "lr": 0.05}]
    return model, groups


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_group_hypergradient_is_the_derivative_along_a_constant_rate(momentum):
    """β = 0, μ = 1: Δ^g_t = ∂E(w_t)/∂η^g for constant rates, by central differences of
    runs of torch.optim.SGD with per-group rates (so the dynamics are torch.optim's too)."""
    data, T, h = _data(6), 6, 1e-6
    model, groups = _two_group_model()
    opt = optim.RTHO(groups, lr=0.1, beta=0.0, momentum=momentum)
    for b, v in data[:T]:
        opt.step(*_closures(model, b, v))
    deltas = [float(d.hypergradient) for d in opt.last_step]
    val = data[T - 1][1]

    def E_after(rates):         # E(w_{T-1}) after T-1 steps of torch.optim.SGD
        m = tiny_mlp(5)
        sgd = torch.optim.SGD([{"params": m[0].parameters(), "lr": rates[0]},
                               {"params": m[2].parameters(), "lr": rates[1]}],
                              momentum=momentum)
        for b, _ in data[:T - 1]:
            sgd.zero_grad()
            F.cross_entropy(m(b[0]), b[1]).backward()
            sgd.step()
        with torch.no_grad():
            return float(F.cross_entropy(m(val[0]), val[1]))

    for g, base in enumerate((0.1, 0.05)):
        up, down = [0.1, 0.05], [0.1, 0.05]
        up[g], down[g] = base + h, base - h
        fd = (E_after(up) - E_after(down)) / (2 * h)
        assert deltas[g] == pytest.approx(fd, rel=1e-6, abs=1e-10)
    assert abs(deltas[0] - deltas[1]) > 1e-3 * abs(deltas[0])


@pytest.mark.parametrize("kind,kw", [("sgd", dict(momentum=0.9, mu="auto", kappa=1e-3)),
                                     ("adam", dict(mu=0.9, lr=1e-2, beta=1e-5))])
def test_two_groups_equal_per_direction_single_products(kind, kw, monkeypatch):
    """The batched (vmap) Hessian-vector products give the numbers of one call per group."""
    data = _data(6)
    results = []
    for batched in (True, False):
        model, groups = _two_group_model()
        opt = optim.Marthe(groups, kind, **{"lr": 0.1, "beta": 1e-2, **kw})
        if not batched:
            def one_at_a_time(outputs, inputs, grad_outputs=None, is_grads_batched=False,
                              real=torch.autograd.grad, **k):
                if not is_grads_batched:
                    return real(outputs, inputs, grad_outputs=grad_outputs, **k)
                n = grad_outputs[0].shape[0]
                per = [real(outputs, inputs, grad_outputs=[g[i] for g in grad_outputs],
                            retain_graph=True, **{a: b for a, b in k.items()
                                                  if a != "retain_graph"})
                       for i in range(n)]
                return [torch.stack([p[j] for p in per]) for j in range(len(inputs))]
            monkeypatch.setattr(torch.autograd, "grad", one_at_a_time)
        for b, v in data:
            opt.step(*_closures(model, b, v))
        monkeypatch.undo()
        results.append(([float(g["lr"]) for g in opt.param_groups],
                        [p.detach().clone() for p in model.parameters()]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-12)
    assert results[0][0][0] != results[0][0][1]
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind,kw", [("sgd", dict(momentum=0.9, mu="auto", kappa=1e-3)),
                                     ("adam", dict(mu="auto", lr=1e-2, beta=1e-5))])
def test_state_dict_resumes_bit_exactly(kind, kw):
    data = _data(10)
    model, groups = _two_group_model()
    opt = optim.Marthe(groups, kind, **{"lr": 0.1, "beta": 1e-2, **kw})
    for b, v in data:
        opt.step(*_closures(model, b, v))
    straight = [p.detach().clone() for p in model.parameters()]
    lrs = [float(g["lr"]) for g in opt.param_groups]

    model2, groups2 = _two_group_model()
    opt2 = optim.Marthe(groups2, kind, **{"lr": 0.1, "beta": 1e-2, **kw})
    for b, v in data[:4]:
        opt2.step(*_closures(model2, b, v))
    buf = io.BytesIO()
    torch.save({"model": model2.state_dict(), "opt": opt2.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=False)
    model3, groups3 = _two_group_model(seed=11)          # other initial weights: overwritten
    opt3 = optim.Marthe(groups3, kind, **{"lr": 0.1, "beta": 1e-2, **kw})
    model3.load_state_dict(saved["model"])
    opt3.load_state_dict(saved["opt"])
    for b, v in data[4:]:
        opt3.step(*_closures(model3, b, v))
    assert [float(g["lr"]) for g in opt3.param_groups] == lrs
    for a, b in zip(model3.parameters(), straight, strict=True):
        assert torch.equal(a.detach(), b)


def test_a_scheduler_resets_eta_and_keeps_the_tangent():
    data = _data(6)
    model = tiny_mlp(6)
    opt = optim.Marthe(model.parameters(), lr=0.1, beta=1e-2, mu=0.9)
    for b, v in data[:3]:
        opt.step(*_closures(model, b, v))
    Z = opt.state[next(model.parameters())]["Z"].clone()
    opt.param_groups[0]["lr"] = 0.02                  # what a scheduler does
    b, v = data[3]
    opt.step(*_closures(model, b, v))
    info = opt.last_step[0]
    expected = max(0.02 - float(info.beta) * float(info.hypergradient), 0.0)
    assert float(opt.param_groups[0]["lr"]) == pytest.approx(expected, rel=1e-14)
    assert not torch.equal(Z, torch.zeros_like(Z))
    # a torch scheduler (which wraps step) writes it the same way
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    b, v = data[4]
    opt.step(*_closures(model, b, v))
    before = float(opt.param_groups[0]["lr"])
    sched.step()
    assert float(opt.param_groups[0]["lr"]) == pytest.approx(before * 0.5, rel=1e-14)
    b, v = data[5]
    opt.step(*_closures(model, b, v))
    info = opt.last_step[0]
    expected = max(before * 0.5 - float(info.beta) * float(info.hypergradient), 0.0)
    assert float(opt.param_groups[0]["lr"]) == pytest.approx(expected, rel=1e-12)


def test_frozen_and_unused_parameters():
    model = tiny_mlp(7)
    extra = torch.nn.Linear(2, 2).to(DT)          # never used by the losses
    model[0].bias.requires_grad_(False)
    frozen = model[0].bias.detach().clone()
    extra_w = extra.weight.detach().clone()
    opt = optim.Marthe([*model.parameters(), *extra.parameters()], lr=0.1, beta=1e-2)
    for b, v in _data(3):
        opt.step(*_closures(model, b, v))
    assert torch.equal(model[0].bias, frozen) and model[0].bias not in opt.state
    assert torch.equal(extra.weight, extra_w)       # zero gradient, no weight decay
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_batchnorm_buffers_move_in_train_mode_only():
    model = tiny_mlp(8, batchnorm=True)
    opt = optim.Marthe(model.parameters(), lr=0.1, beta=1e-2)
    (b, v), = _data(1)

    def val():                                      # E in eval mode, the mode restored
        was = model.training
        model.eval()
        try:
            return F.cross_entropy(model(v[0]), v[1])
        finally:
            model.train(was)

    model.train()
    opt.step(lambda: F.cross_entropy(model(b[0]), b[1]), val)
    assert int(model[1].num_batches_tracked) == 1
    model.eval()
    mean = model[1].running_mean.clone()
    opt.step(lambda: F.cross_entropy(model(b[0]), b[1]), val)
    assert torch.equal(model[1].running_mean, mean)


def test_errors_are_clear():
    model = tiny_mlp(9)
    (b, v), = _data(1)
    L, E = _closures(model, b, v)
    with pytest.raises(ValueError, match="lr"):
        optim.Marthe(model.parameters(), lr=float("nan"))
    with pytest.raises(ValueError, match="lr"):
        optim.Marthe(model.parameters(), lr=-0.1)
    with pytest.raises(ValueError, match="beta"):
        optim.Marthe(model.parameters(), beta=-1.0)
    with pytest.raises(ValueError, match="optimizer"):
        optim.Marthe(model.parameters(), "rmsprop")
    with pytest.raises(ValueError, match="momentum"):
        optim.Marthe(model.parameters(), "adam", momentum=0.9)
    opt = optim.Marthe(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="closure"):
        opt.step()
    with pytest.raises(ValueError, match="val_closure"):
        opt.step(L)

    def calls_backward():
        loss = F.cross_entropy(model(b[0]), b[1])
        loss.backward()
        return loss
    with pytest.raises(RuntimeError, match="backward"):
        opt.step(calls_backward, E)
    with pytest.raises(ValueError, match="scalar"):
        opt.step(lambda: model(b[0]), E)
    opt.zero_grad()
    opt.step(L, E)                                   # after the errors, a step works
    with pytest.raises(RuntimeError, match="after the first step"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2, dtype=DT))]})


def test_divergence_names_the_step_and_keeps_the_state():
    model = tiny_mlp(10)
    opt = optim.Marthe(model.parameters(), lr=0.1, beta=1e-2)
    data = _data(4)
    for b, v in data[:2]:
        opt.step(*_closures(model, b, v))
    before = [p.detach().clone() for p in model.parameters()]
    state = copy.deepcopy(opt.state_dict())
    b, v = data[2]
    with pytest.raises(hg.DivergenceError, match="step 2"):
        opt.step(lambda: F.cross_entropy(model(b[0]), b[1]) * float("nan"),
                 _closures(model, b, v)[1])
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
    assert opt.param_groups[0]["hyper"]["t"] == state["param_groups"][0]["hyper"]["t"]


def test_val_closure_given_once():
    data = _data(3)
    model, ref = tiny_mlp(12), tiny_mlp(12)
    fixed_val = data[0][1]
    opt = optim.Marthe(model.parameters(), lr=0.1, beta=1e-2,
                       val_closure=lambda: F.cross_entropy(model(fixed_val[0]), fixed_val[1]))
    opt_ref = optim.Marthe(ref.parameters(), lr=0.1, beta=1e-2)
    for b, _ in data:
        opt.step(lambda: F.cross_entropy(model(b[0]), b[1]))  # noqa: B023 (called at once)
        opt_ref.step(*_closures(ref, b, fixed_val))
    assert float(opt.param_groups[0]["lr"]) == float(opt_ref.param_groups[0]["lr"])
